"""The companion study's scoring prompts, filled byte-identically (arXiv:2412.20264).

Texts come verbatim from the study's public code, shipped as ``resources/scoring_prompts.json``:
a 1-3 empathy rating (four instruction variants) and 15 subfactor scores of 1-10 (two
instruction variants). The study fills its templates with Python f-strings, so placeholders
are substituted in one pass: a brace in a dialogue is never taken for a placeholder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ... import REPO_ROOT
from ...core.errors import ConfigError

# The three dimensions of empathy and their 5 subfactors each, in the prompts' order: one mapping,
# kept with the study's data so that PRIDE's teacher prompt (training layer) reads it too.
from ...data.scoring_study import DIMENSIONS, SUBFACTORS_PER_DIMENSION

DEFAULT_SCORING_PROMPTS = REPO_ROOT / "resources" / "scoring_prompts.json"
RATING = "rating"
SUBFACTORS = "subfactors"
#: An offline feature classifier predicting the 1-3 rating (``scoring/classifier/``): no prompt.
CLASSIFIER = "classifier"
KINDS = (RATING, SUBFACTORS, CLASSIFIER)
#: What a kind's scores measure in the empathy_scores table: a classifier predicts the rating.
MEASURED_AS = {RATING: RATING, SUBFACTORS: SUBFACTORS, CLASSIFIER: RATING}
#: Variant used when a scorer names none.
DEFAULT_VARIANT = {RATING: "naive", SUBFACTORS: "v2"}
#: Score ranges of each kind (inclusive).
RANGES = {RATING: (1, 3), SUBFACTORS: (1, 10)}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
#: "- Name:" items of the subfactor instructions (the v1 text has no list of names of its own).
_ITEM = re.compile(r"-\s*([A-Z][^:\n]*?):")


def fill_once(template: str, **values: str) -> str:
    """``template`` with each ``{name}`` replaced in one pass, as an f-string does."""
    missing = set(_PLACEHOLDER.findall(template)) - set(values)
    if missing:
        raise KeyError(f"no value for placeholder(s) {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"scoring prompts file not found: {path}") from exc


@dataclass(frozen=True)
class ScoringPrompt:
    """One scorer's prompt: its kind, its variant, and how to build its two messages."""

    kind: str
    variant: str
    system: str
    instructions: str
    user_template: str
    #: The 15 subfactor names in prompt order (5 per dimension); empty for a rating.
    names: tuple[str, ...] = ()

    def messages(self, situation: str, speaker_uttr: str, response: str) -> tuple[str, str]:
        """(system, user) for one answer, filled exactly as the study's code fills them."""
        if self.kind == RATING:
            user = fill_once(
                self.user_template,
                instructions=self.instructions,
                context=situation,
                speaker_utterance=speaker_uttr,
                response=response,
            )
        else:
            user = fill_once(
                self.user_template,
                instructions=self.instructions,
                context_line="Situation: " + situation,
                utterance_line="Speaker Utterance: " + speaker_uttr,
                response_line="Response: " + response,
            )
        return self.system, user

    def dimension_of(self, index: int) -> str:
        """The dimension of the ``index``-th subfactor (prompt order)."""
        return DIMENSIONS[index // SUBFACTORS_PER_DIMENSION]


def variants(kind: str, path: str | Path = DEFAULT_SCORING_PROMPTS) -> list[str]:
    """Instruction variants the prompts file offers for ``kind``."""
    raw = _load(str(path))
    if kind == RATING:
        return list(raw["rating_1_to_3"]["instructions"])
    if kind == SUBFACTORS:
        part = raw["subfactors_1_to_10"]
        return [k.removeprefix("instructions_") for k in part if k.startswith("instructions_")]
    raise ConfigError(
        f"scorer kind {kind!r} has no prompt variants (prompt kinds: {RATING}, {SUBFACTORS})"
    )


def subfactor_names(instructions: str) -> tuple[str, ...]:
    """The subfactor names listed in a subfactor instruction text, in order."""
    head = instructions.split("into five subfactors each as follows:", 1)[-1]
    return tuple(name.strip() for name in _ITEM.findall(head))


def scoring_prompt(
    kind: str, variant: str | None = None, path: str | Path = DEFAULT_SCORING_PROMPTS
) -> ScoringPrompt:
    """The prompt of a ``kind`` scorer with instruction ``variant`` (its default if None)."""
    raw = _load(str(path))
    variant = variant or DEFAULT_VARIANT.get(kind, "")
    offered = variants(kind, path)
    if variant not in offered:
        raise ConfigError(
            f"scorer kind {kind!r} has no prompt variant {variant!r} in {path}"
            f" (offered: {', '.join(offered)})"
        )
    if kind == RATING:
        part = raw["rating_1_to_3"]
        return ScoringPrompt(
            RATING, variant, part["system"], part["instructions"][variant], part["user_template"]
        )
    part = raw["subfactors_1_to_10"]
    instructions = part[f"instructions_{variant}"]
    # The file lists v2's names by dimension; v1's are read off its instruction text.
    listed = part.get(f"{variant}_names")
    names = (
        tuple(n for dimension in DIMENSIONS for n in listed[dimension])
        if listed
        else subfactor_names(instructions)
    )
    expected = len(DIMENSIONS) * SUBFACTORS_PER_DIMENSION
    if len(names) != expected:
        raise ConfigError(
            f"{path}: subfactors_1_to_10.instructions_{variant} lists {len(names)} subfactors,"
            f" expected {expected}"
        )
    return ScoringPrompt(
        SUBFACTORS, variant, part["system"], instructions, part["user_template"], names
    )
