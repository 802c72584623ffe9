"""A few surface features of a response that empathy raters are known to react to.

Why: sentence embeddings encode topic more than stance; empathetic responding is partly marked
by surface cues: addressing the speaker ("you"), asking an exploratory question, expressing
sympathy or validation, not talking about oneself (Sharma et al. 2020, "A Computational Approach
to Understanding Empathy Expressed in Text-Based Mental Health Support", EMNLP; Welivita & Pu
2024 discuss the same cues). Values are rates or flags of order 1, so one ridge penalty suits
them and the unit-length embedding alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[a-z']+")
SECOND_PERSON = frozenset({"you", "you're", "your", "yours", "yourself", "you've", "you'll"})
FIRST_PERSON = frozenset({"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "myself"})
SYMPATHY = frozenset(
    {
        "sorry",
        "understand",
        "understandable",
        "sounds",
        "feel",
        "feeling",
        "must",
        "hope",
        "glad",
        "proud",
        "congratulations",
        "tough",
        "hard",
        "difficult",
    }
)
NAMES = (
    "log_words",
    "has_question",
    "questions",
    "second_person_rate",
    "first_person_rate",
    "has_exclamation",
    "sympathy_rate",
    "sentences",
)


def lexical_features(texts: Sequence[str]) -> np.ndarray:
    """One row per text, columns ``NAMES``."""
    rows = []
    for text in texts:
        words = _WORD.findall(text.lower())
        n = max(len(words), 1)
        rows.append(
            [
                np.log1p(len(words)) / 4,
                float("?" in text),
                min(text.count("?"), 3) / 3,
                sum(w in SECOND_PERSON for w in words) / n,
                sum(w in FIRST_PERSON for w in words) / n,
                float("!" in text),
                sum(w in SYMPATHY for w in words) / n,
                min(len(re.findall(r"[.!?]+", text)), 6) / 6,
            ]
        )
    return np.asarray(rows, dtype=float).reshape(len(rows), len(NAMES))
