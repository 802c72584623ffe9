"""A scorer's reply to its scores, or invalid: counted, never guessed.

A rating reply is valid when it holds exactly one integer and that integer is 1-3 (the study's
code strips "Empathy Score: " / "Score: " and reads the digit). A subfactor reply is read as
JSON when it is JSON naming the 15 subfactors (pairs, objects or a mapping, in any order);
otherwise, as the study's code reads it, every integer of the text in order is a score. Either
way it is valid only with exactly 15 integers, each 1-10: a reply with 14, 16, a decimal or a 0
is invalid, with the reason recorded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .prompts import RANGES, RATING, ScoringPrompt

#: An integer that is not part of a decimal number ("7.5" holds none; "7." holds 7).
_INTEGER = re.compile(r"(?<![\d.])\d+(?!\d|\.\d)")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


@dataclass(frozen=True)
class Parsed:
    """Scores in prompt order when valid; else None and why (``problem``)."""

    scores: tuple[int, ...] | None
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.scores is not None


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _pairs(value: Any) -> list[tuple[str, Any]] | None:
    """(name, score) pairs of a JSON reply: a mapping, a list of pairs, a list of one-key
    objects or of {"name"/"subfactor", "score"} objects, possibly under one wrapping key."""
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, list | dict):
            return _pairs(inner)
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if not isinstance(value, list):
        return None
    pairs = []
    for item in value:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
            pairs.append((item[0], item[1]))
        elif isinstance(item, dict) and len(item) == 1:
            pairs.extend((str(k), v) for k, v in item.items())
        elif isinstance(item, dict) and "score" in item:
            name = item.get("name", item.get("subfactor"))
            if not isinstance(name, str):
                return None
            pairs.append((name, item["score"]))
        else:
            return None
    return pairs


def _from_json(text: str, names: tuple[str, ...]) -> list[Any] | None:
    """Scores of a JSON reply in prompt order, or None when it does not name every subfactor."""
    try:
        value = json.loads(_FENCE.sub("", text.strip()))
    except ValueError:
        return None
    pairs = _pairs(value)
    if not pairs:
        return None
    by_name = {_key(name): score for name, score in pairs}
    wanted = [_key(n) for n in names]
    if len(pairs) != len(names) or set(by_name) != set(wanted):
        return None
    return [by_name[k] for k in wanted]


def _check(scores: list[Any], count: int, low: int, high: int) -> Parsed:
    if len(scores) != count:
        return Parsed(None, f"{len(scores)} scores, expected {count}")
    for value in scores:
        if isinstance(value, bool) or not isinstance(value, int):
            return Parsed(None, f"score {value!r} is not an integer")
        if not low <= value <= high:
            return Parsed(None, f"score {value} outside {low}-{high}")
    return Parsed(tuple(scores))


def parse_reply(text: str | None, prompt: ScoringPrompt) -> Parsed:
    """The scores of one reply to ``prompt`` (see the module's rules)."""
    if not text or not text.strip():
        return Parsed(None, "empty reply")
    low, high = RANGES[prompt.kind]
    if prompt.kind == RATING:
        return _check([int(n) for n in _INTEGER.findall(text)], 1, low, high)
    from_json = _from_json(text, prompt.names)
    if from_json is not None:
        return _check(from_json, len(prompt.names), low, high)
    return _check([int(n) for n in _INTEGER.findall(text)], len(prompt.names), low, high)
