"""Reading and writing the evaluation's JSON-lines files (answers, judgments).

Writes go to a temporary file that is renamed into place, so a killed job never leaves a
half-written file that Snakemake or a later step would take for a finished one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..errors import DatasetError, EmpathyDistillError


class AnswersError(EmpathyDistillError):
    """An answers or judgments file is missing, malformed or does not cover the test split."""


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise AnswersError(f"file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise AnswersError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return rows


def read_answers(path: str | Path) -> dict[str, str]:
    """dialog_id -> answer text of an answers file (``results/answers/...jsonl``)."""
    answers: dict[str, str] = {}
    for number, row in enumerate(read_jsonl(path), 1):
        if "dialog_id" not in row or not isinstance(row.get("answer"), str):
            raise AnswersError(f"{path}: line {number} needs 'dialog_id' and a string 'answer'")
        if row["dialog_id"] in answers:
            raise AnswersError(f"{path}: dialog_id {row['dialog_id']!r} appears twice")
        answers[row["dialog_id"]] = row["answer"]
    return answers


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
