"""The answer sets a report job is handed, named and ordered for people to read.

Report jobs get their files from the rule (``{input}``) and name each one from its path
(``grid.tag_of_answer_path``), so they never re-derive paths from the config. Readers see the
human response first, then the teacher, then per student its base model and its trained models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import DatasetError
from ..core.grid import parse_tag, tag_of_answer_path
from .records import AnswersError, read_answer_records

HUMAN = "human"
HUMAN_COLUMNS = ("response_human", "rating_human")
_KIND_ORDER = {HUMAN: 0, "teacher": 1, "base": 2, "model": 2}


@dataclass(frozen=True)
class AnswerSet:
    """One set of answers to the test dialogues: the human's, the teacher's or a student's."""

    tag: str  # an answer tag (grid.py) or "human"
    records: dict[str, dict]  # dialog_id -> answer record (``answer``, ``refusal``, ...)
    source: str  # the file it came from, for error messages

    @property
    def info(self) -> dict[str, str]:
        return {"kind": HUMAN} if self.tag == HUMAN else parse_tag(self.tag)

    @property
    def label(self) -> str:
        return label_of(self.tag)

    def answer(self, dialog_id: str) -> str:
        if dialog_id not in self.records:
            raise AnswersError(f"{self.source}: no answer for test dialogue {dialog_id!r}")
        return self.records[dialog_id]["answer"]


def label_of(tag: str) -> str:
    """``human``, ``teacher``, ``<student> base`` or ``<student> <method>/<strategy>/<stage>``."""
    if tag == HUMAN:
        return HUMAN
    info = parse_tag(tag)
    if info["kind"] == "teacher":
        return "teacher"
    if info["kind"] == "base":
        return f"{info['student']} base"
    return f"{info['student']} {info['method']}/{info['strategy']}/{info['stage']}"


def read_answer_set(path: str | Path) -> AnswerSet:
    """An answers file, named by its path; every record needs a dialog_id and a string answer."""
    try:
        tag = tag_of_answer_path(path)
    except ValueError as exc:
        raise AnswersError(str(exc)) from exc
    records = {str(key): row for key, row in read_answer_records(path).items()}
    return AnswerSet(tag, records, str(path))


def human_set(test: pd.DataFrame, test_path: str | Path) -> AnswerSet:
    """The dataset's human responses to the test dialogues, with their crowd ratings."""
    missing = [c for c in HUMAN_COLUMNS if c not in test.columns]
    if missing:
        raise DatasetError(
            f"{test_path}: missing column(s) {', '.join(missing)}; expected the split of the "
            "dataset (results/data/test.csv), which has the human response and its rating"
        )
    records = {
        str(row.dialog_id): {"answer": str(row.response_human), "rating": row.rating_human}
        for row in test.itertuples(index=False)
    }
    return AnswerSet(HUMAN, records, str(test_path))


def reading_order(sets: Sequence[AnswerSet]) -> list[AnswerSet]:
    """Human, teacher, then per student (in first-seen order) its base model, then its trained
    models in the order the rule lists them (the grid's order)."""
    students: dict[str, int] = {}
    for s in sets:
        if "student" in s.info:
            students.setdefault(s.info["student"], len(students))
    position = {id(s): k for k, s in enumerate(sets)}

    def key(s: AnswerSet) -> tuple:
        info = s.info
        return (
            _KIND_ORDER[info["kind"]],
            students.get(info.get("student", ""), -1),
            info["kind"] != "base",
            position[id(s)],
        )

    return sorted(sets, key=key)
