"""Is a model's output real text? Words checked against the real dataset's vocabulary.

The vocabulary is that of the Welivita & Pu (2024) table's texts (situations, utterances and the
five responses, written by people and by GPT-4, LLaMA-2, Gemini and Mixtral, never by the model
under test): about 9,200 words. The synthetic test dataset's few dozen sentences are far too small
a vocabulary to tell real text from noise. The ``human_words`` fixture (conftest.py) builds it.

Measured on real outputs: SmolLM2-135M-Instruct's greedy answers have 0.91-1.00 of their words in
the vocabulary (0.98 pooled); the random ``builtin:tiny`` model's BPE noise has 0.07-0.81 (0.25-0.58
pooled), with U+FFFD and control characters where its tokens split a UTF-8 sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
#: Decoding noise: the replacement character and C0/C1 controls other than newline and tab.
BYTE_SOUP = re.compile(r"[\ufffd\x00-\x08\x0b-\x1f\x7f-\x9f]")


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def dictionary(table: pd.DataFrame) -> set[str]:
    """Words of the dataset's texts (never written by the model under test)."""
    columns = ["situation", "speaker_uttr", *(c for c in table if c.startswith("response_"))]
    words: set[str] = set()
    for column in columns:
        for text in table[column].astype(str):
            words.update(words_of(text))
    return words


def known_share(found: list[str], words: set[str]) -> float:
    return sum(w in words for w in found) / len(found) if found else 0.0


def repeats_itself(found: list[str]) -> bool:
    """One sentence on repeat: fewer than 60% distinct word trigrams."""
    trigrams = list(zip(found, found[1:], found[2:], strict=False))
    return len(set(trigrams)) < 0.6 * len(trigrams)


def cut_at_token_limit(text: str) -> str:
    """The text without the one U+FFFD that ends it when the token limit split an emoji's bytes."""
    return text.rstrip().removesuffix("\ufffd")


def assert_real_text(answer: str, words: set[str]) -> None:
    """One answer of at least 8 words, 70% of them dictionary words, not a loop."""
    found = words_of(answer)
    assert len(found) >= 8, answer
    known = known_share(found, words)
    assert known >= 0.7, (known, answer)
    assert not repeats_itself(found), answer
    assert not BYTE_SOUP.search(cut_at_token_limit(answer)), answer


def assert_mostly_real_text(texts: Iterable[str], words: set[str], share: float = 0.8) -> None:
    """Many outputs of a small model: no byte soup in any, 90% dictionary words over all, and at
    least ``share`` of them read as text (3+ words, 80% known, not a loop). A short greedy answer
    ("10% off!") is real but too short to judge on its own, hence a share, not every one."""
    texts = list(texts)
    assert texts, "no texts"
    # A text cut at the token limit may end inside a multi-byte character (an emoji): one U+FFFD
    # at the very end is truncation, not noise.
    soup = [t for t in texts if BYTE_SOUP.search(cut_at_token_limit(t))]
    assert not soup, soup[:3]
    pooled = [w for t in texts for w in words_of(t)]
    assert known_share(pooled, words) >= 0.9, (known_share(pooled, words), texts[:5])

    def reads(text: str) -> bool:
        found = words_of(text)
        return len(found) >= 3 and known_share(found, words) >= 0.8 and not repeats_itself(found)

    failing = [t for t in texts if not reads(t)]
    assert len(failing) <= (1 - share) * len(texts), (len(failing), len(texts), failing[:5])
