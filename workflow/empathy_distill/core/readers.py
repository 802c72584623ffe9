"""The one way the stages read their JSON-lines files and CSV tables.

A missing file or a malformed line is a user-facing error naming the file (and line), not a
traceback: the rule's log then says which input to regenerate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DatasetError, EmpathyDistillError


def read_jsonl(
    path: str | Path, error: type[EmpathyDistillError] = DatasetError
) -> list[dict[str, Any]]:
    """Every non-blank line of ``path`` as JSON; problems raise ``error`` (a stage passes its
    own error type, e.g. evaluation's AnswersError)."""
    path = Path(path)
    if not path.exists():
        raise error(f"file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return rows


def read_table(path: str | Path, required: Iterable[str]) -> pd.DataFrame:
    """A CSV table of text columns keyed by a unique ``dialog_id`` (splits, sources)."""
    required = list(required)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {required}")
    if table["dialog_id"].duplicated().any():
        dup = table.loc[table["dialog_id"].duplicated(), "dialog_id"].iloc[0]
        raise DatasetError(f"{path}: dialog_id {dup!r} appears more than once")
    return table
