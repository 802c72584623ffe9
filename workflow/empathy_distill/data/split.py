"""The paper's train/test split.

Xie et al. (2025) hold out for testing every dialogue in which fewer than two of the five
responses were rated 3 ("Good"): the hard cases, where a student has most room to improve. On the
full dataset this gives 1,750 train and 250 test dialogues, as in the paper. Rows keep dataset
order.
"""

from __future__ import annotations

import pandas as pd

from .dataset import RESPONDERS, rating_column

GOOD = 3
MIN_GOOD_FOR_TRAIN = 2


def good_count(table: pd.DataFrame) -> pd.Series:
    """How many of the five responses of each dialogue were rated 3."""
    return sum((table[rating_column(r)] == GOOD).astype(int) for r in RESPONDERS)


def split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): test = dialogues with fewer than 2 responses rated 3."""
    is_test = good_count(table) < MIN_GOOD_FOR_TRAIN
    return table[~is_test].copy(), table[is_test].copy()


def limit(table: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """The first ``max_rows`` dialogues (dataset order), for demos and smoke runs."""
    return table if max_rows is None else table.head(max_rows).copy()
