"""The shipped prompts (resources/prompts.json) filled as the paper's reference code fills them.

Their bytes equal the reference's: tests/test_reference_texts.py."""

from __future__ import annotations

import json

import pytest

from empathy_distill.core import strategies
from empathy_distill.core.prompts import Prompts, fill

from .conftest import REPO_ROOT


def test_student_prompt_is_filled_byte_identically():
    raw = json.loads((REPO_ROOT / "resources" / "prompts.json").read_text(encoding="utf-8"))
    template = raw["student"]["train_user"]
    text = Prompts().student_train("I lost {my} keys ", "Ugh.")
    head, tail = template.split("{context}")
    mid, end = tail.split("{speaker_utterance}")
    assert text == head + "I lost {my} keys " + mid + "Ugh." + end
    assert text.endswith("\nResponse: ")
    assert "\u2019" in text  # the reference's typographic apostrophes survive


def test_every_improve_strategy_fills_all_placeholders():
    prompts = Prompts()
    for strategy in strategies.names(strategies.SINGLE_TURN):
        text = prompts.teacher_improve(strategy, "ctx", "utt", "resp")
        assert "{" not in text, strategy
        assert text.endswith("\nResponse: resp \nImproved Response:")


def test_fill_rejects_missing_placeholder():
    with pytest.raises(KeyError):
        fill("no placeholders here", context="x")
