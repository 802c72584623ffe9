"""The study's classifier table from its own data (evaluation/scoring/study_reproduction.py):
its split, a cell recomputed with plain sklearn, k by CV blind to the test rows, every cell."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_selection import RFE, SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from empathy_distill.core import specs
from empathy_distill.core.config import load_config
from empathy_distill.data import scoring_study as study
from empathy_distill.evaluation.scoring import study_grid
from empathy_distill.evaluation.scoring import study_reproduction as repro
from empathy_distill.evaluation.scoring import study_reproduction_job as job

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake


@pytest.fixture(scope="module")
def balanced(scoring_study_dir) -> repro.Study:
    features = study.load(scoring_study_dir / study.BALANCED_FEATURES)
    texts = study.load(scoring_study_dir / study.BALANCED)
    return repro.load_study(features, texts, embedder=None)


def _only(data: repro.Study, features: str) -> repro.Study:
    return repro.Study({features: data.features[features]}, data.ratings, data.ids)


def test_the_split_is_1536_train_and_384_test_with_128_per_rating(balanced) -> None:
    # 1,920 = 3 x 640; 20% is 384, stratified: 128 of each rating; 1,920 - 384 = 1,536
    train, test = repro.study_split(balanced.ratings)
    assert (len(train), len(test)) == (1536, 384)
    assert set(np.bincount(balanced.ratings[test])[1:]) == {128}
    assert not set(train) & set(test)
    # the study's own call on its own frame (X and y, not row numbers) picks the same rows
    frame = pd.DataFrame({"row": np.arange(len(balanced.ratings))})
    _, x_test, _, _ = train_test_split(
        frame, balanced.ratings, test_size=0.2, random_state=42, stratify=balanced.ratings
    )
    assert list(x_test["row"]) == list(test)


def test_miti_features_are_the_study_files_0_1_columns(balanced, scoring_study_dir) -> None:
    table = pd.read_csv(scoring_study_dir / study.BALANCED_FEATURES)
    assert (balanced.features["miti"] == table.iloc[:, 17:32].to_numpy()).all()
    assert list(table.columns[17:32]) == list(study.MITI_CODES)


def test_cells_recomputed_with_plain_sklearn(balanced) -> None:
    """subfactors/svc/no selection and subfactors/lr/SelectKBest k=5, as the study's code runs
    them on its frame, give the table's accuracies."""
    x, y = balanced.features["subfactors"], balanced.ratings
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=42, stratify=y
    )
    svc = SVC().fit(x_train, y_train).score(x_test, y_test)
    selector = SelectKBest(f_classif, k=5).fit(x_train, y_train)
    lr = (
        LogisticRegression(max_iter=1000)
        .fit(selector.transform(x_train), y_train)
        .score(selector.transform(x_test), y_test)
    )
    data = _only(balanced, "subfactors")
    none = repro.per_k_table(data, ["svc"], selections=["none"])
    kbest = repro.per_k_table(data, ["lr"], selections=["kbest"], k_values=[5])
    assert none["test_accuracy"].iloc[0] == pytest.approx(svc)
    assert kbest.loc[kbest["k"] == 5, "test_accuracy"].iloc[0] == pytest.approx(lr)
    assert svc == pytest.approx(197 / 384)  # measured once: 0.5130


def test_one_rfe_ranking_gives_rfe_of_every_k(balanced) -> None:
    x, y = balanced.features["subfactors+miti"][:300], balanced.ratings[:300]
    ranking = repro.rfe_ranking(x, y, step=1, smallest=1)
    for k in (1, 22):
        direct = RFE(LogisticRegression(max_iter=1000), n_features_to_select=k).fit(x, y)
        assert list(repro.rfe_columns(ranking, k, 1, 1)) == list(np.flatnonzero(direct.support_))
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(300, 64)) + y[:, None] * rng.normal(size=64) * 0.1
    ranking = repro.rfe_ranking(wide, y, step=16, smallest=16)
    direct = RFE(LogisticRegression(max_iter=1000), n_features_to_select=32, step=16)
    support = np.flatnonzero(direct.fit(wide, y).support_)
    assert list(repro.rfe_columns(ranking, 32, 16, 16)) == list(support)


def test_the_cv_k_never_reads_the_test_rows(balanced) -> None:
    """Shuffling the test rows' ratings leaves every CV accuracy, hence the cv-chosen k, as is;
    the study's best-test k reads them."""
    data = _only(balanced, "subfactors")
    _, test = repro.study_split(data.ratings)
    shuffled = data.ratings.copy()
    shuffled[test] = np.random.default_rng(1).permutation(shuffled[test])
    split = repro.study_split(data.ratings)  # the same rows: only the test labels move
    ks = [2, 5, 9, 15]
    before = repro.per_k_table(data, ["lr"], selections=["kbest"], k_values=ks, split=split)
    after = repro.per_k_table(
        repro.Study(data.features, shuffled, data.ids),
        ["lr"],
        selections=["kbest"],
        k_values=ks,
        split=split,
    )
    assert list(before["cv_accuracy"]) == list(after["cv_accuracy"])
    chosen = [repro.choose_k(t).set_index("k_choice") for t in (before, after)]
    assert chosen[0].loc["cv", "k"] == chosen[1].loc["cv", "k"]
    assert list(before["test_accuracy"]) != list(after["test_accuracy"])


def test_the_table_has_every_cell_and_the_best_rows(monkeypatch) -> None:
    # The table's shape is under test, not the study's five models (their settings and one
    # real fit each: test_the_models_are_the_studys_five): each name fits a logistic
    # regression here, instead of 79-101 s of CI for 390 fits of the MLP (5,000 iterations),
    # the forest (100 trees) and the rest.
    fast = {name: (lambda: LogisticRegression(max_iter=1000)) for name in repro.MODELS}
    monkeypatch.setattr(repro, "MODELS", fast)
    rng = np.random.default_rng(0)
    ratings = np.repeat([1, 2, 3], 40)
    features = {
        "subfactors": rng.integers(1, 11, size=(120, 3)).astype(float) + ratings[:, None],
        "miti": rng.integers(0, 2, size=(120, 2)).astype(float),
    }
    data = repro.Study(features, ratings, [str(i) for i in range(120)])
    table = repro.reproduction_table(repro.per_k_table(data))
    cells = table[table["model"] != "best"]
    expected = set(
        itertools.product(features, repro.MODELS, study_grid.SELECTIONS, study_grid.K_CHOICES)
    )
    keys = zip(
        cells["features"], cells["model"], cells["selection"], cells["k_choice"], strict=True
    )
    assert sorted(keys) == sorted(expected)
    none = cells[cells["selection"] == "none"]
    assert (none["k"] == none["n_features"]).all()
    assert set(table["n_test"]) == {24} and set(table["n_train"]) == {96}
    best = table[table["model"] == "best"]
    assert len(best) == len(features) * 2 and best["chosen"].str.contains("/").all()
    assert table["reported"].isna().all()  # the study reports no figure for these names


def test_the_models_are_the_studys_five() -> None:
    assert tuple(repro.MODELS) == study_grid.MODEL_NAMES
    mlp = repro.MODELS["mlp"]()
    assert (mlp.hidden_layer_sizes, mlp.max_iter, mlp.random_state) == ((64, 32), 5000, 42)
    assert repro.MODELS["lr"]().max_iter == 1000
    assert repro.MODELS["rf"]().random_state == repro.MODELS["tree"]().random_state == 0
    # each fits and tells three planted classes apart on its training rows
    rng = np.random.default_rng(0)
    ratings = np.repeat([1, 2, 3], 40)
    x = rng.normal(size=(120, 3)) + 3 * ratings[:, None]
    for name, make in repro.MODELS.items():
        predicted = make().fit(x, ratings).predict(x)
        assert (predicted == ratings).mean() > 0.9, name


def test_the_spec_names_the_pinned_files_and_the_grid() -> None:
    config = load_config(REPO_ROOT / "config.yaml")
    assert config["scoring"]["study_reproduction"] is True  # on by default
    spec = specs.build("scoring_study_reproduction", config)
    assert set(spec["files"]) == set(study.FILES)
    assert spec["features"] == ["subfactors", "miti", "subfactors+miti", "embedding"]


@pytest.mark.parametrize("on", [True, False])
def test_the_dry_run_plans_the_rule_when_on(dataset_path, tmp_path, on) -> None:
    overlay = {"dataset": {"path": str(dataset_path)}, "scoring": {"study_reproduction": on}}
    result = run_snakemake(tmp_path, overlay, "-n", "--quiet", "rules")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert ("scoring_study_reproduction" in output) is on
    assert ("download_scoring_study            4" in output) is on


class _RecordingEmbedder:
    """Stands in for MiniLM (evaluation/embeddings.py): records the texts, returns 384-d rows."""

    name = "recording"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        return np.ones((len(texts), 384), dtype=np.float32)


def test_embedding_features_embed_the_studys_text_of_each_balanced_response(scoring_study_dir):
    texts = study.load(scoring_study_dir / study.BALANCED)
    embedder = _RecordingEmbedder()
    data = repro.load_study(
        study.load(scoring_study_dir / study.BALANCED_FEATURES), texts, embedder
    )
    assert data.features["embedding"].shape == (1920, 384)
    first = texts.iloc[0]
    assert embedder.texts[0] == (
        f"Situation: {first['situation']}; Speaker Utterance: {first['speaker_uttr']};"
        f" Response: {first['response']}"
    )
    assert repro.k_grid("embedding", 384) == [16, 32, 64, 128, 256, 384]
    assert repro.k_grid("miti", 15) == list(range(1, 16))


def test_the_job_writes_table_per_k_and_figure_from_the_pinned_files(
    scoring_study_dir, paper_dataset_path, tmp_path
) -> None:
    """The rule's command on the real files, narrowed by its spec to MITI and the tree."""
    spec = specs.build("scoring_study_reproduction", load_config(REPO_ROOT / "config.yaml"))
    spec = {**spec, "features": ["miti"], "models": ["tree"], "cache_dir": str(tmp_path)}
    spec.pop("finetuned")  # the fine-tuned scorers' rows: tests/test_scoring_study_finetune.py
    out = {name: tmp_path / name for name in ("table.csv", "by_k.csv", "figure.png")}
    status = job.main(
        [
            *("--spec", specs.dumps(spec), "--study-dir", str(scoring_study_dir)),
            *("--dataset", str(paper_dataset_path), "--table-out", str(out["table.csv"])),
            *("--by-k-out", str(out["by_k.csv"]), "--figure-out", str(out["figure.png"])),
        ]
    )
    assert status == 0
    table = pd.read_csv(out["table.csv"])
    assert len(table) == 3 * 2 + 2  # 3 selections x 2 k choices, + the two best rows
    assert set(table["protocol"]) == {"study_balanced"}
    assert len(pd.read_csv(out["by_k.csv"])) == 1 + 15 + 15
    assert out["figure.png"].read_bytes()[:4] == b"\x89PNG"
