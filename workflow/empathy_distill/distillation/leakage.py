"""Leakage guard: no dialogue of the test split may reach any training file.

A student evaluated on dialogues it was trained on would inflate every win rate of the grid, so
the workflow refuses to train until this check has passed on every set.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..core.errors import LeakageError
from .formats import read_set


def check_no_leakage(test_csv: str | Path, set_files: Iterable[str | Path]) -> int:
    """Raise LeakageError naming file and dialog_ids on overlap; return the records checked."""
    test_ids = set(pd.read_csv(test_csv, usecols=["dialog_id"])["dialog_id"])
    checked = 0
    leaks = []
    for path in set_files:
        records = read_set(path)
        checked += len(records)
        found = sorted({r["dialog_id"] for r in records} & test_ids)
        if found:
            leaks.append(f"{path}: {len(found)} test dialogue(s), e.g. {found[:5]}")
    if leaks:
        raise LeakageError("test-split dialogues found in training files:\n  " + "\n  ".join(leaks))
    return checked
