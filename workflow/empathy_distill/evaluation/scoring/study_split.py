"""The study's 80/20 split of its balanced set (arXiv:2412.20264's code: ``train_test_split``,
stratified by rating, ``random_state=42``), shared by its classifier table and its fine-tuning
protocol so that both test on the same 384 responses.

scikit-learn is imported when a split is made, not with this module: the cost projection and
the Snakefile import this module's importers at parse time, and importing scikit-learn takes
about a second of every ``snakemake -n`` (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 42  # the study's train_test_split and MLP seed
TEST_SIZE = 0.2


def study_split(ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): the study's 80/20 split, stratified by rating, seed 42."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(ratings))
    train, test = train_test_split(
        rows, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=ratings
    )
    return np.asarray(train), np.asarray(test)
