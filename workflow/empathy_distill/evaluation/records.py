"""Reading and writing the evaluation's JSON-lines files (answers, judgments).

Writes go through ``empathy_distill.core.atomic`` (temporary file, then rename).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import readers
from ..core.atomic import write_jsonl
from ..core.errors import DatasetError, EmpathyDistillError

__all__ = ["AnswersError", "read_answers", "read_jsonl", "read_split", "write_jsonl"]


class AnswersError(EmpathyDistillError):
    """An answers or judgments file is missing, malformed or does not cover the test split."""


def read_jsonl(path: str | Path) -> list[dict]:
    """Every JSON line of an answers or judgments file (errors are AnswersError)."""
    return readers.read_jsonl(path, AnswersError)


def read_answer_records(path: str | Path) -> dict[str, dict]:
    """dialog_id -> whole record of an answers file (``results/answers/...jsonl``); every record
    needs a dialog_id and a string answer, and no dialog_id may appear twice."""
    records: dict[str, dict] = {}
    for number, row in enumerate(read_jsonl(path), 1):
        if "dialog_id" not in row or not isinstance(row.get("answer"), str):
            raise AnswersError(f"{path}: line {number} needs 'dialog_id' and a string 'answer'")
        if row["dialog_id"] in records:
            raise AnswersError(f"{path}: dialog_id {row['dialog_id']!r} appears twice")
        records[row["dialog_id"]] = row
    return records


def read_answers(path: str | Path) -> dict[str, str]:
    """dialog_id -> answer text of an answers file (``results/answers/...jsonl``)."""
    return {dialog_id: row["answer"] for dialog_id, row in read_answer_records(path).items()}


TEST_COLUMNS = ("dialog_id", "situation", "speaker_uttr")


def read_split(path: str | Path) -> pd.DataFrame:
    """A split table (``results/data/{train,test}.csv``) with the columns evaluation needs."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"split file not found: {path}")
    frame = pd.read_csv(path, dtype={"dialog_id": str}, keep_default_na=False)
    missing = [c for c in TEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def n_words(text: str) -> int:
    """Answer length in whitespace-separated words (the unit of the paper's 28-word target)."""
    return len(text.split())
