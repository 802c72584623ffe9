"""The study's evaluation protocol, for comparison with its figures: classes balanced by
downsampling every class to the smallest one, then an 80/20 stratified split, both with seed 42
(its public code). Our own protocol trains on the paper's train split and tests on its test split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STUDY_SEED = 42
STUDY_TEST_SIZE = 0.2


def balanced_indices(labels: np.ndarray, seed: int = STUDY_SEED) -> np.ndarray:
    """Row indices with every class downsampled to the smallest class's count (pandas
    ``sample(n, random_state=seed)`` per class, classes in sorted order)."""
    frame = pd.DataFrame({"label": labels})
    smallest = int(frame["label"].value_counts().min())
    parts = [
        group.sample(n=smallest, random_state=seed).index.to_numpy()
        for _, group in frame.groupby("label", sort=True)
    ]
    return np.concatenate(parts)


def study_split(labels: np.ndarray, seed: int = STUDY_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of the study's protocol over ``labels``."""
    from sklearn.model_selection import train_test_split

    kept = balanced_indices(labels, seed)
    train, test = train_test_split(
        kept, test_size=STUDY_TEST_SIZE, stratify=labels[kept], random_state=seed
    )
    return np.asarray(train), np.asarray(test)
