"""Offline feature classifiers (scorer kind ``classifier``, after Xie et al., IEEE BigData 2024,
arXiv:2412.20264): trained on train-split responses only, reproducible with the seed, the
study's protocol sizes, a planted signal learnt, MITI refused, and the rules in the DAG."""

from __future__ import annotations

import argparse
import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from empathy_distill.core import grid
from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation.records import AnswersError, read_jsonl, write_jsonl
from empathy_distill.evaluation.scoring import score, table
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.evaluation.scoring.classifier import apply, models, protocol, train
from empathy_distill.evaluation.scoring.classifier.features import response_rows
from empathy_distill.evaluation.scoring.classifier.models import ClassifierScorer

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

RESPONDERS = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
#: Planted words per rating; the last responder gets none (its rating is not learnable).
MARKERS = {1: "whatever", 2: "okay", 3: "sorry"}
UNMARKED = "mixtral_empathy"


class SpyEmbedder:
    """Counts of the planted words plus 4 hash dimensions; records every text it embeds."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        rows = []
        for text in texts:
            words = text.lower().split()
            counts = [words.count(MARKERS[r]) for r in (1, 2, 3)]
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            rows.append(counts + list(np.random.default_rng(seed).normal(size=4) * 0.1))
        return np.asarray(rows, dtype=np.float32)


def planted(frame: pd.DataFrame) -> pd.DataFrame:
    """The split with each response ending in its rating's marker (except UNMARKED's)."""
    frame = frame.copy()
    for responder in RESPONDERS:
        if responder == UNMARKED:
            continue
        frame[f"response_{responder}"] = [
            f"{text} {MARKERS[int(rating)]}"
            for text, rating in zip(
                frame[f"response_{responder}"], frame[f"rating_{responder}"], strict=True
            )
        ]
    return frame


@pytest.fixture(scope="module")
def frames(train, test_split):
    return planted(train), planted(test_split)


def config_for(tmp_path, **classifier) -> dict:
    return validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache")},
            "scoring": {
                "scorers": {
                    "clf": {
                        "kind": "classifier",
                        "k_grid": [2, 4],
                        "cv_folds": 3,
                        # two fast ones (rf depends on the seed); every one: test_every_model
                        "models": ["lr", "rf"],
                        "selections": ["none", "kbest"],
                        **classifier,
                    },
                    "sub": {"kind": "subfactors", "backend": "openai", "model": "gpt-4o-mini"},
                }
            },
        }
    )


def job_args(tmp_path, frames, name="out", subfactors=(None, None)) -> argparse.Namespace:
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    for split, frame in zip(("train", "test"), frames, strict=True):
        frame.to_csv(out / f"{split}.csv", index=False)
    return argparse.Namespace(
        train=str(out / "train.csv"),
        test=str(out / "test.csv"),
        subfactors_train=subfactors[0],
        subfactors_test=subfactors[1],
        model_out=str(out / "model.joblib"),
        scores_out=str(out / "responses_test.jsonl"),
        table_out=str(out / "table.csv"),
        importance_out=str(out / "importance.csv"),
        figure_out=str(out / "importance.png"),
    )


@pytest.fixture(scope="module")
def trained(frames, tmp_path_factory):
    """One embedding classifier trained on the planted split (seconds), with what the spy saw
    by the time the model was saved."""
    tmp = tmp_path_factory.mktemp("clf")
    spec = scoring_specs.classifier_scorer(config_for(tmp), "clf")
    spy = SpyEmbedder()
    seen_at_save: list[str] = []
    original = ClassifierScorer.save

    def save(self, path):
        seen_at_save.extend(spy.seen)
        original(self, path)

    ClassifierScorer.save = save
    try:
        args = job_args(tmp, frames)
        train.run(args, spec, spy)
    finally:
        ClassifierScorer.save = original
    return {"spec": spec, "args": args, "spy": spy, "seen_at_save": seen_at_save}


# --- no test-split response reaches fitting ----------------------------------------------------
def test_no_test_response_is_embedded_before_the_model_is_saved(trained, frames):
    train_texts = set(response_rows(frames[0])["text"])
    test_texts = set(response_rows(frames[1])["text"])
    seen = set(trained["seen_at_save"])
    assert seen == train_texts and not seen & test_texts
    assert test_texts <= set(trained["spy"].seen)  # embedded afterwards, to measure only
    model = ClassifierScorer.load(trained["args"].model_out)
    assert set(model.trained_on) == set(frames[0]["dialog_id"].astype(str))


def test_test_split_labels_change_no_fitted_model(trained, frames, tmp_path):
    """Planted test rows with every rating flipped: the model and the study-protocol rows
    (fitted inside the train split) are unchanged; only the test-split measures move."""
    flipped = frames[1].copy()
    for responder in RESPONDERS:
        flipped[f"rating_{responder}"] = 4 - flipped[f"rating_{responder}"]
    args = job_args(tmp_path, (frames[0], flipped))
    train.run(args, trained["spec"], SpyEmbedder())
    probe = np.random.default_rng(0).normal(size=(20, 7))
    before = ClassifierScorer.load(trained["args"].model_out).predict(probe)
    after = ClassifierScorer.load(args.model_out).predict(probe)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1])
    old, new = pd.read_csv(trained["args"].table_out), pd.read_csv(args.table_out)
    study = old["protocol"] == train.STUDY
    pd.testing.assert_frame_equal(old[study], new[study])
    paper = ~study
    assert (old.loc[paper, "cv_score"] == new.loc[paper, "cv_score"]).all()
    assert not (old.loc[paper, "accuracy"] == new.loc[paper, "accuracy"]).all()


def test_every_model_and_selection_learns_the_planted_signal():
    """The study's four classifiers under each selection: k from the grid, and the planted
    3 columns read (every row carries its rating's marker)."""
    rng = np.random.default_rng(0)
    y = np.tile([1, 2, 3], 30)
    x = np.hstack([np.eye(3)[y - 1], rng.normal(size=(90, 3)) * 0.1])
    for model in models.MODELS:
        for selection in models.SELECTIONS:
            fit = models.choose_and_fit(x, y, model, selection, [3, 5], 3, 0)
            assert fit.k in ((None,) if selection == "none" else (3, 5)), (model, selection)
            assert (fit.pipeline.predict(x) == y).mean() >= 0.95, (model, selection)


def test_a_model_that_learns_nothing_scores_chance_not_the_majority_share():
    """On noise with 80 % of one rating, always answering it has accuracy 0.8; the CV score
    that picks the model is balanced accuracy, so such a model scores about 1/3."""
    rng = np.random.default_rng(0)
    y = np.array([3] * 80 + [1] * 10 + [2] * 10)
    x = rng.normal(size=(100, 4))
    spec = {"models": ["lr"], "selections": ["none"], "k_grid": [2], "cv_folds": 5, "seed": 0}
    [fit] = train.fit_all(x, y, spec)
    predicted = fit.pipeline.predict(x)
    assert (predicted == 3).mean() >= 0.9  # it learnt nothing but the majority
    assert fit.cv_score < 0.45  # balanced accuracy near 1/3; accuracy would be about 0.8


# --- reproducibility ------------------------------------------------------------------------------
def test_same_seed_same_results_other_seed_differs(trained, frames, tmp_path):
    again = job_args(tmp_path, frames, "again")
    train.run(again, trained["spec"], SpyEmbedder())
    first = trained["args"]
    pd.testing.assert_frame_equal(pd.read_csv(first.table_out), pd.read_csv(again.table_out))
    pd.testing.assert_frame_equal(
        pd.read_csv(first.importance_out), pd.read_csv(again.importance_out)
    )
    assert read_jsonl(first.scores_out) == read_jsonl(again.scores_out)
    other = job_args(tmp_path, frames, "other")
    train.run(other, {**trained["spec"], "seed": 1}, SpyEmbedder())
    a, b = pd.read_csv(first.table_out), pd.read_csv(other.table_out)
    assert not np.allclose(a["cv_score"], b["cv_score"])


# --- the study's protocol ---------------------------------------------------------------------
def test_study_protocol_sizes_by_hand():
    labels = np.array([1] * 7 + [2] * 12 + [3] * 20)
    kept = protocol.balanced_indices(labels)
    # every class downsampled to the smallest (7): 21 rows, 7 per class, no row twice
    assert len(kept) == 21 and len(set(kept)) == 21
    assert sorted(np.bincount(labels[kept])[1:]) == [7, 7, 7]
    part_train, part_test = protocol.study_split(labels)
    # 20 % of 21 is 4.2: scikit-learn rounds the test part up to 5, 16 remain for training
    assert (len(part_train), len(part_test)) == (16, 5)
    assert set(part_train) | set(part_test) == set(kept) and not set(part_train) & set(part_test)
    # stratified: 5 test rows over 3 equal classes is 2, 2, 1
    assert sorted(np.bincount(labels[part_test], minlength=4)[1:]) == [1, 2, 2]
    again = protocol.study_split(labels)
    assert list(again[0]) == list(part_train)  # seed 42, as the study


def test_study_protocol_rows_of_the_table(trained, frames):
    ratings = response_rows(frames[0])["rating"].to_numpy()
    smallest = int(np.bincount(ratings)[1:].min())
    n_test = math.ceil(0.2 * 3 * smallest)
    rows = pd.read_csv(trained["args"].table_out)
    study = rows[rows["protocol"] == train.STUDY]
    assert len(study) == 4  # 2 models x 2 selections
    assert set(study["n_test"]) == {n_test} and set(study["n_train"]) == {3 * smallest - n_test}
    paper = rows[rows["protocol"] == train.PAPER]
    assert set(paper["n_train"]) == {5 * len(frames[0])}
    assert set(paper["n_test"]) == {5 * len(frames[1])}
    assert paper["chosen"].sum() == 1 and not study["chosen"].any()
    assert rows["note"].str.contains("no MITI codes").all()


# --- the planted signal -----------------------------------------------------------------------
def test_planted_signal_beats_the_majority_class(trained, frames):
    test_rows = response_rows(frames[1])
    train_ratings = response_rows(frames[0])["rating"]
    majority = float((test_rows["rating"] == train_ratings.mode()[0]).mean())
    # 4 of 5 responders carry their rating's word: a classifier reading it gets those right
    # and the unmarked fifth at least as often as the majority answer does there
    unmarked = test_rows["responder"] == UNMARKED
    marked_share = float((~unmarked).mean())
    ceiling = marked_share + (1 - marked_share) * float(
        (test_rows.loc[unmarked, "rating"] == train_ratings.mode()[0]).mean()
    )
    margin = (ceiling - majority) / 2
    assert margin > 0.1
    rows = pd.read_csv(trained["args"].table_out)
    chosen = rows[rows["chosen"]].iloc[0]
    assert chosen["majority_accuracy"] == pytest.approx(majority)
    assert chosen["accuracy"] >= majority + margin
    importance = pd.read_csv(trained["args"].importance_out)
    assert set(importance["feature"]) == {f"emb_{i:03d}" for i in range(7)}
    assert set(importance.head(1)["feature"]) <= {"emb_000", "emb_001", "emb_002"}


def test_test_records_follow_the_contract(trained, frames):
    records = read_jsonl(trained["args"].scores_out)
    rows = response_rows(frames[1])
    assert len(records) == len(rows)
    assert [(r["dialog_id"], r["responder"]) for r in records] == list(
        zip(rows["dialog_id"], rows["responder"], strict=True)
    )
    for record, human in zip(records, rows["rating"], strict=True):
        assert record["kind"] == "classifier" and record["valid"]
        assert record["human_rating"] == human and record["scores"][0] in (1, 2, 3)
        assert sum(record["probabilities"]) == pytest.approx(1.0)
        assert record["raw"] is None and record["request_key"] is None


# --- answer sets ------------------------------------------------------------------------------
def test_score_answers_applies_the_model_and_the_table_rates(trained, frames, monkeypatch):
    monkeypatch.setattr(apply, "default_embedder", lambda cache_dir: SpyEmbedder())
    test = frames[1]
    words = [MARKERS[3]] * (len(test) - 2) + [MARKERS[1]] * 2
    items = [
        score.ScoreItem(str(r.dialog_id), r.situation, r.speaker_uttr, f"I hear you {w}")
        for r, w in zip(test.itertuples(), words, strict=True)
    ]
    spec = {
        **trained["spec"],
        "model_file": trained["args"].model_out,
    }
    records = score.run_scorer(spec, items)
    assert [r["scores"] for r in records] == [[3]] * (len(test) - 2) + [[1]] * 2
    [row] = table.summarize_scores(records, "classifier", 200, 0)
    assert row["measure"] == "rating"
    assert row["mean"] == pytest.approx((3 * (len(test) - 2) + 2) / len(test))
    assert (row["n_valid"], row["n_invalid"], row["n_refused"]) == (len(test), 0, 0)


def test_a_score_answers_job_loads_the_model_once_for_all_its_answer_sets(
    trained, frames, monkeypatch, tmp_path
):
    """The job's answer sets (here two, the grid's default has 129) are scored with one load
    of the fitted model, each set's file holding what scoring that set alone gives."""
    monkeypatch.setattr(apply, "default_embedder", lambda cache_dir: SpyEmbedder())
    loads = []
    real_load = apply.ClassifierScorer.load
    monkeypatch.setattr(
        apply.ClassifierScorer, "load", lambda path: loads.append(path) or real_load(path)
    )
    test = frames[1]
    test[["dialog_id", "situation", "speaker_uttr"]].to_csv(tmp_path / "test.csv", index=False)
    tags = {"s--base": MARKERS[3], grid.TEACHER_TAG: MARKERS[1]}
    for tag, word in tags.items():
        rows = [
            {"dialog_id": str(d), "prompt": "", "answer": f"I hear you {word}", "generation": {}}
            for d in test["dialog_id"]
        ]
        write_jsonl(tmp_path / grid.answer_path(tag), rows)
    spec = {**trained["spec"], "model_file": trained["args"].model_out, "answer_tags": list(tags)}
    scored = score.score_answer_sets(spec, tmp_path / "test.csv", tmp_path)
    assert len(loads) == 1
    assert list(scored) == [grid.score_path(spec["scorer"], tag) for tag in tags]
    for tag in tags:
        items = score.score_items(tmp_path / "test.csv", tmp_path / grid.answer_path(tag))
        alone = score.run_scorer(spec, items, answers_file=grid.answer_path(tag))
        assert scored[grid.score_path(spec["scorer"], tag)] == alone
    base = scored[grid.score_path(spec["scorer"], "s--base")]
    assert [r["scores"] for r in base] == [[3]] * len(test)


# --- subfactor features -----------------------------------------------------------------------
def subfactor_records(frame, invalid_every=7):
    """Planted subfactor scores (all = 3 x rating) per response; every 7th invalid."""
    records = []
    for i, row in enumerate(response_rows(frame).itertuples(index=False)):
        valid = i % invalid_every != 0
        records.append(
            {
                "dialog_id": row.dialog_id,
                "responder": row.responder,
                "kind": "subfactors",
                "valid": valid,
                "scores": [3 * int(row.rating)] * 15 if valid else None,
            }
        )
    return records


def test_subfactor_features_drop_and_count_invalid_records(frames, tmp_path):
    spec = scoring_specs.classifier_scorer(
        config_for(tmp_path, features="subfactors", subfactor_scorer="sub", models=["lr"]), "clf"
    )
    assert len(spec["subfactor_scorer"]["names"]) == 15
    paths = []
    for split, frame in zip(("train", "test"), frames, strict=True):
        path = tmp_path / f"responses_{split}.jsonl"
        write_jsonl(path, subfactor_records(frame))
        paths.append(str(path))
    args = job_args(tmp_path, frames, subfactors=tuple(paths))
    train.run(args, spec, None)
    rows = pd.read_csv(args.table_out)
    n_train = 5 * len(frames[0])
    dropped = math.ceil(n_train / 7)  # rows 0, 7, 14, ...
    assert set(rows.loc[rows["protocol"] == train.PAPER, "n_train"]) == {n_train - dropped}
    assert set(rows["n_dropped"]) == {dropped}
    records = read_jsonl(args.scores_out)
    assert sum(not r["valid"] for r in records) == math.ceil(5 * len(frames[1]) / 7)
    importance = pd.read_csv(args.importance_out)
    assert set(importance["feature"]) == set(spec["subfactor_scorer"]["names"])


def test_missing_subfactor_file_is_a_clear_error(frames, tmp_path):
    spec = scoring_specs.classifier_scorer(
        config_for(tmp_path, features="subfactors", subfactor_scorer="sub"), "clf"
    )
    missing = tmp_path / "results/scores/sub/responses_train.jsonl"
    with pytest.raises(AnswersError, match=r"responses_train.jsonl: no scores of subfactor scorer"):
        train.featurize(frames[0], spec, None, str(missing))


# --- config -------------------------------------------------------------------------------------
def test_a_feature_set_out_of_order_is_refused_naming_the_key(tmp_path):
    # MITI features come from the offline MITI tagger (tests/test_scoring_offline.py); the
    # families join in one order, so one feature set has one name (and one spec)
    with pytest.raises(ConfigError) as error:
        config_for(tmp_path, features="miti+subfactors", subfactor_scorer="sub")
    message = str(error.value)
    assert "config['scoring']['scorers']['clf']['features']" in message
    assert "joined by + in that order" in message
    config_for(tmp_path, features="subfactors+miti", subfactor_scorer="sub")
    with pytest.raises(ConfigError, match=r"\['subfactor_scorer'\]: features 'subfactors' need"):
        config_for(tmp_path, features="subfactors")
    with pytest.raises(ConfigError, match="'nope' is not a subfactors scorer"):
        config_for(tmp_path, features="subfactors", subfactor_scorer="nope")


def test_shipped_config_defines_the_minilm_classifier_outside_the_grid():
    from empathy_distill.core.config import load_config

    config = load_config(REPO_ROOT / "config.yaml")
    scorer = config["scoring"]["scorers"]["minilm_classifier"]
    assert scorer["kind"] == "classifier" and scorer["features"] == "embedding"
    assert (scorer["model"], scorer["selection"], scorer["seed"]) == ("best", "best", 0)
    assert "minilm_classifier" not in config["scoring"]["grid"]


# --- the DAG ------------------------------------------------------------------------------------
def test_dry_run_trains_once_and_scores_every_answer_set(dataset_path, tmp_path):
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        # SFT and DPO only (config.yaml adds PRIDE): the answer sets counted below
        "grid": {"students": ["tiny"], "judges": ["offline"], "methods": ["sft", "dpo"]},
        "evaluation": {"comparisons": ["vs_base", "dpo_vs_sft"]},
        "scoring": {
            "prompts": str(REPO_ROOT / "resources" / "scoring_prompts.json"),
            "grid": ["minilm_classifier"],
        },
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert output.count("\nrule train_classifier_scorer:") == 1
    # one job for the scorer, writing every answer set's file
    blocks = [b for b in output.split("\nrule ") if b.startswith("score_answers:")]
    assert len(blocks) == 1
    planned = set(blocks[0].split("output: ", 1)[1].splitlines()[0].strip().split(", "))
    assert planned == {
        "results/scores/minilm_classifier/tiny/base.jsonl",
        "results/scores/minilm_classifier/tiny/direct/chatgpt/sft.jsonl",
        "results/scores/minilm_classifier/tiny/direct/chatgpt/dpo.jsonl",
    }
    assert all("results/scorers/minilm_classifier/model.joblib" in b for b in blocks)
    assert output.count("\nrule empathy_scores:") == 1
