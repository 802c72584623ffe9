"""Shared fixtures: the real dataset (read from ../shared/data, never committed) and its split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DATASET_CSV = SHARED / "data" / "dataset.csv"
REFERENCE_PROMPTS = SHARED / "reference" / "prompts.json"


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    if not DATASET_CSV.exists():
        pytest.skip(f"dataset not available at {DATASET_CSV}")
    return DATASET_CSV


@pytest.fixture(scope="session")
def dataset(dataset_path: Path) -> pd.DataFrame:
    from empathy_distill.dataset import load_dataset

    return load_dataset(dataset_path)


@pytest.fixture(scope="session")
def train_test(dataset: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from empathy_distill.split import split

    return split(dataset)


@pytest.fixture(scope="session")
def train(train_test) -> pd.DataFrame:
    return train_test[0]


@pytest.fixture(scope="session")
def test_split(train_test) -> pd.DataFrame:
    return train_test[1]
