"""Offline stand-ins for the scoring study's annotations (evaluation/scoring/offline/): the
subfactor scorer learns a planted linear signal, the MITI tagger's table is F1 by hand, no
test dialogue is ever learnt from, cross-fitting answers a learnt dialogue with the model that
never saw it, the scores flow where an API subfactor scorer's do, and the DAG plans the rules."""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score

from empathy_distill.core import grid, judges, specs
from empathy_distill.core.config import load_config, validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.data import scoring_study as study
from empathy_distill.evaluation.records import read_split, write_jsonl
from empathy_distill.evaluation.scoring import score, table
from empathy_distill.evaluation.scoring.classifier.features import (
    feature_matrix,
    feature_names,
    feature_parts,
    read_subfactor_scores,
)
from empathy_distill.evaluation.scoring.offline import apply, crossfit, miti, miti_job
from empathy_distill.evaluation.scoring.offline import subfactors as sub
from empathy_distill.evaluation.scoring.offline import subfactors_job as job

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

SETTINGS = {"cv_folds": 3, "seed": 0, "alphas": [0.01, 1.0, 100.0], "neighbours": [5, 10]}


def _ids(n_dialogues: int, per: int = 3) -> list[str]:
    return [f"hit:{i}_conv:{2 * i}" for i in range(n_dialogues) for _ in range(per)]


# --- splits ---------------------------------------------------------------------------------------
def test_folds_and_holdout_never_split_a_dialogue() -> None:
    ids = _ids(50)
    folds = crossfit.dialogue_folds(ids, 5, seed=3)
    for d in set(ids):
        assert len({f for i, f in zip(ids, folds, strict=True) if i == d}) == 1
    assert sorted(np.bincount(folds)) == [30] * 5  # 50 dialogues dealt round-robin, 3 rows each
    fit, held = crossfit.holdout_split(ids, 0.2, seed=3)
    fit_d, held_d = {ids[i] for i in fit}, {ids[i] for i in held}
    assert not fit_d & held_d and len(held_d) == 10 and len(fit_d) == 40
    assert list(crossfit.holdout_split(ids, 0.2, seed=3)[1]) == list(held)  # seeded


def test_cross_fitting_answers_a_learnt_dialogue_with_the_fold_that_never_saw_it() -> None:
    rng = np.random.default_rng(0)
    ids = _ids(30)
    x, y = rng.normal(size=(90, 4)), rng.normal(size=(90, 2))
    fitted = crossfit.cross_fit(lambda: Ridge(alpha=1.0), x, y, ids, 3, seed=0)
    row = 0  # dialogue ids[0], learnt from: answered by the model fitted without its fold
    fold = fitted.fold_of[ids[row]]
    without = np.array([fitted.fold_of[d] != fold for d in ids])
    expected = Ridge(alpha=1.0).fit(x[without], y[without]).predict(x[:1])
    assert np.allclose(fitted.apply("predict", x[:1], ids[:1]), expected)
    assert not np.allclose(expected, Ridge(alpha=1.0).fit(x, y).predict(x[:1]))
    new = fitted.apply("predict", x[:1], ["hit:999_conv:1"])  # an unseen (test) dialogue
    assert np.allclose(new, Ridge(alpha=1.0).fit(x, y).predict(x[:1]))


# --- the subfactor scorer learns a known linear signal --------------------------------------------
def _linear(n_dialogues: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = _ids(n_dialogues)
    x = rng.normal(size=(len(ids), 6))
    weights = rng.normal(size=(6, 15))
    y = 5.5 + 0.8 * x @ weights / np.sqrt(6)
    return ids, x, y + rng.normal(scale=noise, size=y.shape)


def test_a_planted_linear_signal_is_learnt_on_held_out_dialogues() -> None:
    ids, x, y = _linear(200, noise=0.1)
    fit, held = crossfit.holdout_split(ids, 0.2, seed=0)
    choice = sub.choose(
        "ridge_context", x[fit], y[fit], [ids[i] for i in fit], [0.01, 1, 100], SETTINGS
    )
    rows = job.heldout_rows({}, choice, x, y, ids, fit, held)
    per = rows[rows["measure"].isin(study.SUBFACTORS)]
    # independent of the table's code: numpy's correlation of a plain Ridge's held-out answers
    plain = np.clip(Ridge(alpha=choice.param).fit(x[fit], y[fit]).predict(x[held]), 1, 10)
    for j, name in enumerate(study.SUBFACTORS):
        r = np.corrcoef(y[held, j], plain[:, j])[0, 1]
        got = per.loc[per["measure"] == name, "pearson_r"].item()
        assert got == pytest.approx(r, abs=1e-9) and got > 0.9
        mae = np.mean(np.abs(y[held, j] - plain[:, j]))
        assert per.loc[per["measure"] == name, "mae"].item() == pytest.approx(mae)
    cognitive = rows.loc[rows["measure"] == "mean:cognitive", "pearson_r"].item()
    assert cognitive == pytest.approx(per["pearson_r"].iloc[:5].mean())
    assert choice.param == 0.01  # little noise: the weakest penalty has the lowest CV error


def test_noise_alone_is_not_learnt() -> None:
    ids, x, _ = _linear(100, noise=0.0)
    y = np.random.default_rng(1).normal(5, 2, size=(len(ids), 15))  # unrelated to x
    fit, held = crossfit.holdout_split(ids, 0.2, seed=0)
    choice = sub.choose("ridge_context", x[fit], y[fit], [ids[i] for i in fit], [1, 100], SETTINGS)
    rows = job.heldout_rows({}, choice, x, y, ids, fit, held)
    assert rows.loc[rows["measure"] == "mean:all", "pearson_r"].item() < 0.3


def test_missing_study_scores_are_left_out_of_fitting_and_of_their_subfactor_only() -> None:
    ids, _, y = _linear(40, noise=0.1)
    y[0, 10:] = np.nan  # as the study's two rows without compassionate scores
    assert list(sub.complete(y)[:2]) == [False, True]
    frame = sub.agreement(y, np.nan_to_num(y, nan=5.0))
    assert frame.loc[frame["measure"] == study.SUBFACTORS[10], "n"].item() == len(ids) - 1
    assert frame.loc[frame["measure"] == study.SUBFACTORS[0], "n"].item() == len(ids)


# --- the MITI tagger ------------------------------------------------------------------------------
def test_per_code_f1_of_the_table_is_the_hand_computed_one() -> None:
    truth = np.zeros((4, 15))
    predicted = np.zeros((4, 15))
    truth[[0, 1], 0] = 1  # code 0: tp row 0, fn row 1, fp row 2 -> P = R = F1 = 1/2
    predicted[[0, 2], 0] = 1
    truth[[0, 1, 2], 8] = 1  # Support: tp rows 0, 1; fn row 2 -> P 1, R 2/3, F1 0.8
    predicted[[0, 1], 8] = 1
    frame = miti.code_table(truth, predicted, [0.5] * 15, truth).set_index("code")
    assert frame.loc["Closed Question", "f1"] == pytest.approx(0.5)
    assert frame.loc["Support", "f1"] == pytest.approx(0.8)
    assert frame.loc["Support", "support"] == 3 and frame.loc["Warn", "support"] == 0
    # every row tagged Support: P 3/4, R 1 -> F1 2 * 0.75 / 1.75
    assert frame.loc["Support", "f1_all_positive"] == pytest.approx(1.5 / 1.75)
    # micro: tp 3, fp 1, fn 2 over all codes -> 2*3 / (2*3 + 1 + 2)
    assert frame.loc["micro average", "f1"] == pytest.approx(6 / 9)
    assert miti.f1(truth[:, 8], predicted[:, 8]) == pytest.approx(0.8)


def test_the_tagger_learns_planted_codes_and_never_predicts_an_absent_one() -> None:
    rng = np.random.default_rng(0)
    ids = _ids(150)
    x = rng.normal(size=(len(ids), 15))
    y = (x > 0.8).astype(float)  # code j present iff feature j is high (~21 % of rows)
    y[:, 12] = 0  # Warn never occurs
    fit, held = crossfit.holdout_split(ids, 0.2, seed=0)
    fit_ids = [ids[i] for i in fit]
    fitted, thresholds = miti.fit_tagger(x[fit], y[fit], fit_ids, 10.0, 3, 0)
    assert thresholds[12] == miti.NEVER
    # code 0's threshold by hand: plain sklearn out-of-fold probabilities on the same dialogue
    # folds, the threshold of the best sklearn F1 (ties: the lowest)
    folds = crossfit.dialogue_folds(fit_ids, 3, 0)
    xf, yf, proba = x[fit], y[fit, 0], np.zeros(len(fit))
    for k in range(3):
        plain = LogisticRegression(C=10.0, max_iter=1000, random_state=0)
        proba[folds == k] = plain.fit(xf[folds != k], yf[folds != k]).predict_proba(xf[folds == k])[
            :, 1
        ]
    best = max(miti.THRESHOLDS, key=lambda t: (f1_score(yf, proba >= t), -t))
    assert thresholds[0] == best
    predicted = fitted.full.predict(x[held])
    frame = miti.code_table(y[held], predicted, thresholds, y[fit]).set_index("code")
    learnt = frame.drop(index=["Warn", "micro average", "macro average"])
    assert (learnt["f1"] > 0.8).all(), learnt["f1"]
    assert frame.loc["Warn", "predicted"] == 0


# --- the jobs on the study's real files, ids checked ----------------------------------------------
class StandInEmbedder:
    """A few surface features of the text plus 4 hash dimensions (no model download)."""

    name = "stand-in"

    def encode(self, texts):
        rows = []
        for text in texts:
            words = text.lower().split()
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            surface = [len(words) / 50, words.count("sorry"), text.count("?"), text.count("!")]
            rows.append(surface + list(np.random.default_rng(seed).normal(size=4)))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def small_split(paper_train_test, tmp_path_factory) -> dict:
    """The first 150 train-split and 30 test-split dialogues of the paper's split."""
    train, test = paper_train_test
    folder = tmp_path_factory.mktemp("offline_split")
    paths = {"train": folder / "train.csv", "test": folder / "test.csv"}
    train.head(150).to_csv(paths["train"], index=False)
    test.head(30).to_csv(paths["test"], index=False)
    return paths


def _args(study_dir, split, tmp_path) -> argparse.Namespace:
    return argparse.Namespace(
        study_dir=str(study_dir),
        train=str(split["train"]),
        test=str(split["test"]),
        model_out=str(tmp_path / "model.joblib"),
        table_out=str(tmp_path / "table.csv"),
    )


def test_the_subfactor_job_learns_from_train_dialogues_only(
    scoring_study_dir, small_split, tmp_path
) -> None:
    spec = {
        "scorer": "offline_test",
        "candidates": ["ridge_context", "ridge_response", "ridge_both", "knn_context"],
        "heldout_fraction": 0.2,
        **SETTINGS,
    }
    frame = job.run(_args(scoring_study_dir, small_split, tmp_path), spec, StandInEmbedder())
    train_ids = set(read_split(small_split["train"])["dialog_id"])
    test_ids = set(read_split(small_split["test"])["dialog_id"])
    fitted = sub.OfflineSubfactorScorer.load(tmp_path / "model.joblib")
    assert set(fitted.trained_on) == train_ids and not set(fitted.trained_on) & test_ids
    assert set(fitted.model.fold_of) == train_ids
    assert (frame["n_fit_dialogues"] + frame["n_heldout_dialogues"] == 150).all()
    assert frame["n_heldout_dialogues"].iloc[0] == 30
    assert set(frame["candidate"]) == {*spec["candidates"], job.BASELINE}
    assert len(frame) == 5 * (15 + 7)  # 15 subfactors, 3 x (mean, score), mean:all
    cv = frame.drop_duplicates("candidate").set_index("candidate")["cv_pearson_r"]
    chosen = frame.loc[frame["chosen"], "candidate"].unique()
    assert list(chosen) == [cv.drop(job.BASELINE).idxmax()] == [fitted.candidate]
    baseline = frame[frame["candidate"] == job.BASELINE]
    assert baseline["pearson_r"].isna().all() and (baseline["mae"] > 0).all()
    written = pd.read_csv(tmp_path / "table.csv")
    assert list(written.columns) == list(job.COLUMNS) and len(written) == len(frame)


def test_a_test_dialogue_in_the_train_file_stops_the_job(
    scoring_study_dir, small_split, tmp_path
) -> None:
    leaky = tmp_path / "leaky_train.csv"
    pd.concat([read_split(small_split["train"]), read_split(small_split["test"]).head(1)]).to_csv(
        leaky, index=False
    )
    args = _args(scoring_study_dir, {**small_split, "train": leaky}, tmp_path)
    with pytest.raises(Exception, match="test dialogue"):
        job.run(
            args,
            {"scorer": "x", "candidates": ["ridge_context"], "heldout_fraction": 0.2, **SETTINGS},
            StandInEmbedder(),
        )


def test_the_miti_job_reports_every_code_with_its_support(
    scoring_study_dir, small_split, tmp_path
) -> None:
    spec = {"c": 1.0, "cv_folds": 3, "heldout_fraction": 0.2, "seed": 0}
    frame = miti_job.run(_args(scoring_study_dir, small_split, tmp_path), spec, StandInEmbedder())
    assert list(frame["code"][:15]) == list(study.MITI_CODES)
    # support counted independently from the study's file: held-out dialogues' codes
    rows = pd.read_csv(scoring_study_dir / study.DIALOGUES)
    ids = sorted(read_split(small_split["train"])["dialog_id"])
    tagger = miti.MitiTagger.load(tmp_path / "model.joblib")
    assert tagger.trained_on == ids
    long_ids = [d for d in rows["dialog_id"] if d in set(ids) for _ in range(3)]
    _, held = crossfit.holdout_split(
        [d for d in rows["dialog_id"] if d in set(ids) for _ in study.RESPONSE_TYPES], 0.2, 0
    )
    held_d = {long_ids[i] for i in held}
    held_rows = rows[rows["dialog_id"].isin(held_d)]
    affirm = sum(
        "Affirm" in study.parse_miti(held_rows[f"miti_{t}"].iloc[i])
        for t in study.RESPONSE_TYPES
        for i in range(len(held_rows))
    )
    assert frame.set_index("code").loc["Affirm", "support"] == affirm
    assert frame["n_heldout"].iloc[0] == 3 * len(held_d)


# --- scores flow where an API subfactor scorer's do -----------------------------------------------
def _fitted_scorer(tmp_path) -> str:
    """A ridge fitted on 8-dimensional rows, the stand-in embedder's width."""
    ids, x, y = _linear(30, noise=0.1)
    choice = sub.Choice("ridge_context", "context", "ridge", 1.0, 0.0, 0.0)
    x8 = np.hstack([x, x[:, :2]])
    fitted = sub.fit_scorer("minilm_subfactors", choice, x8, y, ids, SETTINGS, "stand-in")
    path = tmp_path / "scorer.joblib"
    fitted.save(path)
    return str(path)


def test_the_offline_scorer_scores_through_run_scorer_into_three_dimensions(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(apply, "default_embedder", lambda *a, **k: StandInEmbedder())
    spec = {
        "scorer": "minilm_subfactors",
        "kind": "subfactors",
        "variant": "v2",
        "backend": "offline",
        "model_file": _fitted_scorer(tmp_path),
        "cache_dir": str(tmp_path),
    }
    items = [
        score.ScoreItem(
            "hit:900_conv:1800", "lost my dog", "I miss him", "So sorry! Want to talk?"
        ),
        score.ScoreItem("hit:901_conv:1802", "new job", "I start Monday", "Congrats."),
    ]
    records = score.run_scorer(spec, items)
    assert [r["dialog_id"] for r in records] == ["hit:900_conv:1800", "hit:901_conv:1802"]
    assert all(r["valid"] and r["kind"] == "subfactors" and len(r["scores"]) == 15 for r in records)
    assert all(1 <= s <= 10 for r in records for s in r["scores"])
    path = tmp_path / "scores.jsonl"
    write_jsonl(path, records)
    found = read_subfactor_scores(path, "minilm_subfactors", ("dialog_id",))  # classifier features
    assert set(found) == {("hit:900_conv:1800",), ("hit:901_conv:1802",)}
    measures = table.per_answer(records[0]["scores"], "subfactors")
    assert set(measures) == {"cognitive", "affective", "compassionate"}
    assert measures["cognitive"] == pytest.approx(np.mean(records[0]["scores"][:5]))


def test_miti_features_join_the_classifier_in_the_studys_order() -> None:
    assert feature_parts("subfactors+miti") == ("subfactors", "miti")
    assert feature_parts("embedding") == ("embedding",)
    with pytest.raises(ConfigError, match="in that order"):
        feature_parts("miti+subfactors")
    x = feature_matrix(
        ["a", "b"], [[1.0] * 15, [2.0] * 15], ("subfactors", "miti"), None, np.eye(2, 15)
    )
    assert x.shape == (2, 30) and x[1, 16] == 1.0
    names = feature_names(("subfactors", "miti"), 0, list(study.SUBFACTORS))
    assert names[15] == "miti:Closed Question" and len(names) == 30


# --- config ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> dict:
    return load_config(REPO_ROOT / "config.yaml")


def _with_scorer(config: dict, **scorer) -> dict:
    config = {**config, "scoring": {**config["scoring"]}}
    config["scoring"]["scorers"] = {**config["scoring"]["scorers"], "x": scorer}
    return config


def test_the_shipped_offline_scorer_calls_no_llm_and_is_in_the_grid(shipped) -> None:
    scorer = shipped["scoring"]["scorers"]["minilm_subfactors"]
    assert not judges.calls_llm(scorer)
    assert "minilm_subfactors" in shipped["scoring"]["grid"]  # on by default (issue 22.6)
    spec = specs.build("score_answers", shipped, "minilm_subfactors")
    assert spec["answer_tags"] == grid.answer_tags(shipped)  # one job, every answer set
    assert spec["model_file"] == "results/scorers/minilm_subfactors/model.joblib"
    assert (spec["kind"], spec["variant"], spec["backend"]) == ("subfactors", "v2", "offline")
    assert spec["candidates"] == ["ridge_context", "ridge_response", "ridge_both", "knn_context"]
    classifier = specs.build("train_classifier_scorer", shipped, "minilm_study_classifier")
    assert classifier["miti_tagger"]["model_file"] == "results/scorers/miti_tagger/model.joblib"
    assert "miti_tagger" not in specs.build("train_classifier_scorer", shipped, "minilm_classifier")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "rating"}, "its kind is subfactors"),
        ({"variant": "v1"}, "v2 scores"),
        ({"model": "gpt-4o-mini"}, "embeds with"),
    ],
)
def test_an_offline_scorer_that_cannot_learn_the_studys_scores_is_refused(
    shipped, change, message
) -> None:
    scorer = {**shipped["scoring"]["scorers"]["minilm_subfactors"], **change}
    with pytest.raises(ConfigError, match=message):
        validate_config(_with_scorer(shipped, **scorer))


def test_offline_settings_on_an_llm_scorer_are_refused(shipped) -> None:
    scorer = {**shipped["scoring"]["scorers"]["gpt4o_mini_subfactors"], "offline": {"seed": 1}}
    with pytest.raises(ConfigError, match="only a scorer with backend offline"):
        validate_config(_with_scorer(shipped, **scorer))


def test_dry_run_plans_the_offline_models_once(dataset_path, tmp_path) -> None:
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        "grid": {"students": ["tiny"], "judges": ["offline"], "methods": ["sft"]},
        "evaluation": {"comparisons": ["vs_base"], "emotion_accuracy": False},
        "scoring": {
            "prompts": str(REPO_ROOT / "resources" / "scoring_prompts.json"),
            "grid": ["minilm_subfactors", "minilm_study_classifier"],
            "study_reproduction": False,
        },
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert output.count("\nrule train_offline_subfactors:") == 1
    assert output.count("\nrule train_miti_tagger:") == 1
    assert "results/tables/offline_subfactor_agreement_minilm_subfactors.csv" in output
    assert "results/tables/miti_tagger_agreement.csv" in output
    # the classifier's subfactor features: the offline scorer's scores of the train responses
    assert "results/scores/minilm_subfactors/responses_train.jsonl" in output
    blocks = [b for b in output.split("\nrule ") if b.startswith("score_answers:")]
    offline = [b for b in blocks if "output: results/scores/minilm_subfactors/" in b]
    assert offline and all("results/scorers/minilm_subfactors/model.joblib" in b for b in offline)


def test_ridge_both_reads_the_study_text_and_the_response_side_by_side() -> None:
    texts = {"context": ["Situation: a; Response: b"], "response": ["b"]}
    x = sub.embed_texts(sub.BOTH, texts.__getitem__, StandInEmbedder())
    alone = [StandInEmbedder().encode(texts[p]) for p in ("context", "response")]
    assert x.shape == (1, 16) and np.allclose(x, np.hstack(alone))


def test_a_miti_classifier_reads_the_taggers_codes_of_every_response(
    train, tmp_path, monkeypatch
) -> None:
    from empathy_distill.evaluation.scoring.classifier import train as classifier_train

    rng = np.random.default_rng(0)
    ids = _ids(40)
    x = rng.normal(size=(len(ids), 8))
    y = (x[:, :1] + np.zeros((1, 15)) > 0).astype(float)  # every code: feature 0 positive
    tagger = miti.MitiTagger(
        crossfit.cross_fit(lambda: miti.CodeModels(1.0, [0.5] * 15), x, y, ids, 3, 0),
        [0.5] * 15,
        1.0,
        StandInEmbedder.name,
        trained_on=sorted(set(ids)),
    )
    tagger.save(tmp_path / "tagger.joblib")
    monkeypatch.setattr(apply, "default_embedder", lambda *a, **k: StandInEmbedder())
    spec = {
        "scorer": "clf",
        "features": "miti",
        "subfactor_scorer": None,
        "cache_dir": str(tmp_path),
        "miti_tagger": {"model_file": str(tmp_path / "tagger.joblib")},
    }
    part = classifier_train.featurize(train, spec, None, None)
    assert part.x.shape == (5 * len(train), 15)
    assert set(np.unique(part.x)) <= {0.0, 1.0}
    expected = tagger.tag(
        StandInEmbedder().encode(part.rows["text"].tolist()), part.rows["dialog_id"]
    )
    assert np.array_equal(part.x, expected)


def test_knn_asks_no_more_neighbours_than_a_fold_model_learns_from() -> None:
    ids, x, y = _linear(6, noise=0.1)  # 6 dialogues, 3 folds: each fold model learns 12 rows
    choice = sub.choose("knn_context", x, y, ids, [5, 40, 80], SETTINGS)
    assert choice.param in (5, 12)
    only_big = sub.choose("knn_context", x, y, ids, [40, 80], SETTINGS)
    assert only_big.param == 12
