"""Shared fixtures: a committed synthetic dataset for most tests, the real one for paper counts.

``dataset_path`` / ``dataset`` / ``train`` / ``test_split`` / ``split`` use
``tests/data/synthetic_dataset.csv`` (60 made-up dialogues in the real schema, written by
``tests/data/make_synthetic_dataset.py``), so they run anywhere. The ``paper_*`` fixtures use the
real Welivita & Pu (2024) table (no licence, never committed) and are skipped, with one reason
naming every place searched, when it is not where the README tells users to put it.
"""

from __future__ import annotations

import os

#: One BLAS/OpenMP thread per test process (set before numpy, scipy or torch is loaded; a value
#: the caller set stays). The README's command runs two workers on two cores, beside the demo's
#: jobs: with OpenBLAS's default of a thread per core, its threads spin on the small solves of
#: the scikit-learn tests (2026-12-07, one test's 390 logistic regressions: idle 15.6 CPU s with
#: two threads, 10.5 with one, same wall; beside two busy processes 22.7 CPU s and 26.8 s of
#: wall against 11.7 and 19.5). Snakemake jobs get their rule's threads from Snakemake.
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
for _name, _value in BLAS_THREADS.items():
    os.environ.setdefault(_name, _value)

import hashlib  # noqa: E402  (after the thread settings, as are the imports below)
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

# Every stage registers its job-spec builders and config checks with core, as the Snakefile does.
import empathy_distill.stages  # noqa: E402, F401

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CSV = REPO_ROOT / "tests" / "data" / "synthetic_dataset.csv"
#: Environment variable naming a copy of the real dataset anywhere on disk.
DATASET_ENV = "EMPATHY_DISTILL_DATASET"
SHARED = REPO_ROOT.parent / "shared"
#: The paper's prompt texts as shipped (tests/test_reference_texts.py checks them byte-equal to
#: ../shared/reference/prompts.json): what every other test reads, so a fresh clone runs them.
SHIPPED_PROMPTS = REPO_ROOT / "resources" / "prompts.json"


#: Test files that run for minutes, started first. With ``-n 2`` (pytest-xdist, ``--dist
#: loadfile --no-loadscope-reorder`` from pyproject.toml) one worker takes the demo (10 to 13
#: minutes) while the other runs the rest; queued last, it would start when the rest is done.
FIRST = ("test_demo.py",)


def skip_or_fail(reason: str, required_by: str) -> NoReturn:
    """Skip for ``reason``, or fail when the environment variable ``required_by`` is 1: CI sets
    it where a skip would be coverage lost without a failure (Slurm, the GPU resolve report,
    the reference texts)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long files first (stable sort: every other test keeps its order)."""
    items.sort(key=lambda item: item.path.name not in FIRST)


def _config_dataset() -> dict:
    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))["dataset"]


def paper_dataset_candidates() -> list[Path]:
    """Where the real dataset may be, in order: $EMPATHY_DISTILL_DATASET, config.yaml's
    dataset.path (resources/dataset.csv, as the README says), a sibling shared/data checkout."""
    candidates = [Path(os.environ[DATASET_ENV])] if os.environ.get(DATASET_ENV) else []
    configured = Path(_config_dataset()["path"])
    candidates.append(configured if configured.is_absolute() else REPO_ROOT / configured)
    candidates.append(SHARED / "data" / "dataset.csv")
    return list(dict.fromkeys(candidates))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_paper_dataset() -> tuple[Path | None, str]:
    """(path of the pinned real dataset, "") or (None, why every candidate was rejected)."""
    expected = _config_dataset()["sha256"]
    rejected = []
    for path in paper_dataset_candidates():
        if not path.is_file():
            rejected.append(f"{path} (missing)")
        elif _sha256(path) != expected:
            rejected.append(f"{path} (sha256 differs from config.yaml dataset.sha256)")
        else:
            return path, ""
    return None, (
        "needs the real Welivita & Pu (2024) dataset for the paper's exact counts; searched: "
        + "; ".join(rejected)
        + f". Put it at resources/dataset.csv (snakemake download_dataset) or set {DATASET_ENV}"
    )


@pytest.fixture(scope="session")
def paper_dataset_path() -> Path:
    path, reason = find_paper_dataset()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def paper_dataset(paper_dataset_path: Path) -> pd.DataFrame:
    from empathy_distill.data.dataset import load_dataset

    return load_dataset(paper_dataset_path)


@pytest.fixture(scope="session")
def human_words(paper_dataset: pd.DataFrame) -> set[str]:
    """The real dataset's 9,240-word vocabulary, to tell a model's real text from noise
    (tests/real_text.py)."""
    from tests.real_text import dictionary

    return dictionary(paper_dataset)


@pytest.fixture(scope="session")
def paper_train_test(paper_dataset: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from empathy_distill.data.split import split

    return split(paper_dataset)


@pytest.fixture(scope="session")
def paper_train(paper_train_test) -> pd.DataFrame:
    return paper_train_test[0]


@pytest.fixture(scope="session")
def paper_test_split(paper_train_test) -> pd.DataFrame:
    return paper_train_test[1]


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The committed synthetic dataset (real schema, made-up dialogues)."""
    return SYNTHETIC_CSV


#: Same file, under the name the evaluation tests use.
dataset_csv = dataset_path


@pytest.fixture(scope="session")
def dataset(dataset_path: Path) -> pd.DataFrame:
    from empathy_distill.data.dataset import load_dataset

    return load_dataset(dataset_path)


@pytest.fixture(scope="session")
def train_test(dataset: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from empathy_distill.data.split import split

    return split(dataset)


@pytest.fixture(scope="session")
def train(train_test) -> pd.DataFrame:
    return train_test[0]


@pytest.fixture(scope="session")
def test_split(train_test) -> pd.DataFrame:
    return train_test[1]


@pytest.fixture(scope="session")
def split(train_test, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The split written as train.csv / test.csv, as the split rule writes it."""
    out = tmp_path_factory.mktemp("split")
    train_test[0].to_csv(out / "train.csv", index=False)
    train_test[1].to_csv(out / "test.csv", index=False)
    return {"train": out / "train.csv", "test": out / "test.csv"}


@pytest.fixture(scope="session")
def llm_types():
    """The LLM layer's request types (Message, ChatRequest)."""
    import empathy_distill.llm as llm

    return llm


#: The companion scoring study's four published files (data/scoring_study.py): where the
#: workflow reads them, then the sibling shared/data checkout CI and helpers have.
SCORING_STUDY_DIRS = (REPO_ROOT / "resources" / "scoring_study", SHARED / "data" / "scoring_study")


@pytest.fixture(scope="session")
def scoring_study_dir() -> Path:
    """A folder with the study's four files, each matching config.yaml's sha256; skipped with
    the places searched when there is none (the files have no licence: never committed)."""
    from empathy_distill.data.dataset import sha256_of

    files = yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))["scoring"][
        "study_data"
    ]["files"]
    rejected = []
    for folder in SCORING_STUDY_DIRS:
        bad = [
            n
            for n, sha in files.items()
            if not (folder / n).is_file() or sha256_of(folder / n) != sha
        ]
        if not bad:
            return folder
        rejected.append(f"{folder} (missing or not pinned: {', '.join(bad)})")
    pytest.skip(
        "needs the scoring study's published files (arXiv:2412.20264); searched: "
        + "; ".join(rejected)
        + ". Run `snakemake download_scoring_study` targets or put them in resources/scoring_study"
    )
