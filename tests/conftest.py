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


#: Same file, under the name the evaluation tests use.
dataset_csv = dataset_path


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


@pytest.fixture(scope="session")
def split(train_test, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The paper's split written as train.csv / test.csv, as the split rule writes it."""
    out = tmp_path_factory.mktemp("split")
    train_test[0].to_csv(out / "train.csv", index=False)
    train_test[1].to_csv(out / "test.csv", index=False)
    return {"train": out / "train.csv", "test": out / "test.csv"}


@pytest.fixture(scope="session")
def llm_types():
    """The LLM layer's request types (Message, ChatRequest)."""
    import empathy_distill.llm as llm

    return llm
