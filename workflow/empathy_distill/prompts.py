"""The paper's prompt texts, filled in byte-identically.

Texts come verbatim from the reference code of Xie et al. (SIGDIAL 2025), shipped as
``resources/prompts.json``. Placeholders are substituted with ``str.replace`` rather than
``str.format`` so that a brace inside a dialogue can never break or alter a prompt.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from . import REPO_ROOT

DEFAULT_PROMPTS_PATH = REPO_ROOT / "resources" / "prompts.json"

#: Single-turn improvement strategies (one teacher call per source response).
SINGLE_TURN_STRATEGIES = (
    "naive_prompt",
    "improve_all_three_dimensions",
    "identify_lacking_dimension",
    "improve_cognitive",
    "improve_affective",
    "improve_compassionate",
)
SEQUENTIAL_STRATEGY = "improve_three_dimensions_sequentially"
#: Pooled strategy: no calls of its own, the three single-dimension outputs together.
COMBINED_STRATEGY = "combined_single_dimensions"
COMBINED_PARTS = ("improve_cognitive", "improve_affective", "improve_compassionate")
IMPROVE_STRATEGIES = (*SINGLE_TURN_STRATEGIES, COMBINED_STRATEGY, SEQUENTIAL_STRATEGY)


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
        if strategy not in SINGLE_TURN_STRATEGIES:
            raise KeyError(f"{strategy!r} is not a single-turn improvement strategy")
        return fill(
            self.raw["teacher"]["improve"][strategy],
            context=situation,
            speaker_utterance=speaker_uttr,
            response=response,
        )

    def teacher_sequential_turns(self) -> tuple[str, str]:
        """User turns 2 and 3 of improve_three_dimensions_sequentially (no placeholders)."""
        seq = self.raw["teacher"][SEQUENTIAL_STRATEGY]
        return seq["turn2_user"], seq["turn3_user"]

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
