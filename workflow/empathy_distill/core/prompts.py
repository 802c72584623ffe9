"""The paper's prompt texts, filled in byte-identically.

Texts come verbatim from the reference code of Xie et al. (SIGDIAL 2025), shipped as
``resources/prompts.json``. Placeholders are substituted with ``str.replace`` rather than
``str.format`` so that a brace inside a dialogue can never break or alter a prompt.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from .. import REPO_ROOT
from . import strategies

DEFAULT_PROMPTS_PATH = REPO_ROOT / "resources" / "prompts.json"


def fill(template: str, **values: str) -> str:
    """Replace each ``{name}`` in ``template`` with its value, byte for byte."""
    for name, value in values.items():
        placeholder = "{" + name + "}"
        if placeholder not in template:
            raise KeyError(f"placeholder {placeholder} not in prompt template")
        template = template.replace(placeholder, str(value))
    return template


@lru_cache(maxsize=8)
def load_prompts(path: str | Path = DEFAULT_PROMPTS_PATH) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class Prompts:
    """Typed access to prompts.json so callers never index raw dicts."""

    def __init__(self, path: str | Path = DEFAULT_PROMPTS_PATH) -> None:
        self.raw = load_prompts(str(path))

    # Student side -------------------------------------------------------------------------
    def student_train(self, situation: str, speaker_uttr: str) -> str:
        """User turn of every SFT example and prompt of every DPO pair."""
        return fill(
            self.raw["student"]["train_user"], context=situation, speaker_utterance=speaker_uttr
        )

    def student_test_base(self, situation: str, speaker_uttr: str) -> str:
        return fill(
            self.raw["student"]["test_prompt_base"],
            context=situation,
            speaker_utterance=speaker_uttr,
        )

    def student_test_finetuned(self, situation: str, speaker_uttr: str) -> str:
        return fill(
            self.raw["student"]["test_prompt_finetuned"],
            context=situation,
            speaker_utterance=speaker_uttr,
        )

    # Teacher side -------------------------------------------------------------------------
    def teacher_initial(self, situation: str, speaker_uttr: str) -> str:
        return fill(
            self.raw["teacher"]["initial_response"]["user"],
            context=situation,
            speaker_utterance=speaker_uttr,
        )

    def teacher_improve(
        self, strategy: str, situation: str, speaker_uttr: str, response: str
    ) -> str:
        """Single-turn rewrite prompt; also turn 1 of the sequential chain (improve_cognitive)."""
        if strategies.kind(strategy) != strategies.SINGLE_TURN:
            raise KeyError(f"{strategy!r} is not a single-turn improvement strategy")
        templates = self.raw["teacher"]["improve"]
        if strategy not in templates:
            raise KeyError(f"prompts file has no template teacher.improve.{strategy}")
        return fill(
            templates[strategy],
            context=situation,
            speaker_utterance=speaker_uttr,
            response=response,
        )

    def teacher_sequential_turns(self, strategy: str) -> tuple[str, ...]:
        """User turns 2, 3, ... of a sequential strategy (``teacher.<strategy>.turn<k>_user``,
        no placeholders); turn 1 is its single-turn strategy's prompt."""
        if strategies.kind(strategy) != strategies.SEQUENTIAL:
            raise KeyError(f"{strategy!r} is not a sequential improvement strategy")
        chain = self.raw["teacher"].get(strategy)
        if not chain:
            raise KeyError(f"prompts file has no turns teacher.{strategy}.turn<k>_user")
        turns = {
            int(m.group(1)): text
            for key, text in chain.items()
            if (m := re.fullmatch(r"turn(\d+)_user", key))
        }
        return tuple(turns[k] for k in sorted(turns) if k >= 2)

    # Judge side ---------------------------------------------------------------------------
    def judge_messages(
        self, situation: str, speaker_uttr: str, response_1: str, response_2: str
    ) -> tuple[str, str]:
        """(system, user) of the pairwise judge; Gemini gets the system as system_instruction."""
        judge = self.raw["judge"]["openai"]
        user = fill(
            judge["user"],
            context=situation,
            speaker_utterance=speaker_uttr,
            response_1=response_1,
            response_2=response_2,
        )
        return judge["system"], user

    def judge_gemini_single_string(
        self, situation: str, speaker_uttr: str, response_1: str, response_2: str
    ) -> str:
        """The reference's Gemini prompt: system and user text in one indented string."""
        return fill(
            self.raw["judge"]["gemini"]["single_string"],
            context=situation,
            speaker_utterance=speaker_uttr,
            response_1=response_1,
            response_2=response_2,
        )
