"""The offline judge: trained on train-split ratings only, calibrated scores, judge wiring."""

from __future__ import annotations

import hashlib
import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from empathy_distill.core import grid
from empathy_distill.core.errors import ConfigError, LeakageError
from empathy_distill.evaluation import embeddings
from empathy_distill.evaluation.embeddings import CachedEmbedder
from empathy_distill.evaluation.judge import PairItem, combine_orders, run_judge
from empathy_distill.evaluation.lexical import NAMES, lexical_features
from empathy_distill.evaluation.offline_judge import cli, model
from empathy_distill.evaluation.offline_judge.evaluate import (
    agreement,
    check_disjoint,
    evaluate,
    reference_orderings,
)
from empathy_distill.evaluation.offline_judge.features import (
    context_text,
    embed_rows,
    long_ratings,
    rater_debiased,
)
from empathy_distill.evaluation.offline_judge.model import (
    OfflineScorer,
    PairwiseRanker,
    candidates,
    dialogue_folds,
    dialogue_pairs,
    select_and_fit,
)
from tests.test_eval_judge import judge_job


class SpyEmbedder:
    """Deterministic hash vectors plus a length signal; records every text it is asked for."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        out = []
        for text in texts:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            vec = np.random.default_rng(seed).normal(size=16)
            vec[0] = len(text.split()) / 20
            out.append(vec / np.linalg.norm(vec))
        return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def frames(split):
    return pd.read_csv(split["train"]).head(120), pd.read_csv(split["test"]).head(40)


@pytest.fixture(scope="module")
def fitted(frames):
    """One scorer fitted on up to 120 train dialogues with the stand-in embedder (seconds)."""
    return select_and_fit(frames[0], SpyEmbedder())


def test_no_test_dialogue_reaches_training(frames):
    train, test = frames
    spy = SpyEmbedder()
    scorer = select_and_fit(train, spy, seed=0)
    train_ids, test_ids = set(train["dialog_id"]), set(test["dialog_id"])
    assert set(scorer.trained_on) == train_ids
    assert not set(scorer.trained_on) & test_ids
    seen = set(spy.seen)
    test_rows = long_ratings(test)
    train_texts = set(long_ratings(train)["response"]) | set(long_ratings(train)["context"])
    assert not seen & set(test_rows["context"])  # no test context was ever embedded
    assert not (seen & set(test_rows["response"])) - train_texts
    assert len(scorer.selection) == len(candidates()) == 36
    # evaluating afterwards uses the test split, but only then
    report = evaluate(scorer, test, margin=0.05)
    # every dialogue of the test frame, each with C(5, 2) = 10 pairs of its five responses
    assert report["n_dialogues"] == len(test) and report["n_pairs"] == 10 * len(test)
    assert 0.0 <= report["pairwise_agreement"] <= report["pairwise_agreement_no_margin"] <= 1.0


def test_overlapping_splits_are_refused(frames, fitted):
    train, test = frames
    with pytest.raises(LeakageError, match="test dialogue"):
        check_disjoint(train, pd.concat([test, train.head(1)]))
    with pytest.raises(LeakageError):
        evaluate(fitted, train.head(5), margin=0.05)


def test_scores_are_percentiles_and_survive_save_load(frames, fitted, tmp_path):
    _, test = frames
    scorer = fitted
    path = tmp_path / "model.joblib"
    scorer.save(path)
    loaded = OfflineScorer.load(path, SpyEmbedder())
    args = (
        test["situation"].tolist(),
        test["speaker_uttr"].tolist(),
        test["response_human"].tolist(),
    )
    scores = loaded.score(*args)
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.allclose(scores, scorer.score(*args))
    assert set(loaded.calibration.rating_class(np.array([0.0, 0.5, 1.0]))) <= {1, 2, 3}


def test_model_saved_before_the_package_split_still_loads(frames, tmp_path, monkeypatch):
    """Files saved by the one-module offline judge pickled the pairwise model's class as
    ``empathy_distill.evaluation.offline_judge.PairwiseRanker``; they must load unchanged."""
    train, test = frames
    data = embed_rows(long_ratings(train), SpyEmbedder())
    scorer = model.fit_scorer(data, model.Candidate("response", "raw", 10.0, "pairwise"), "spy")
    path = tmp_path / "old.joblib"
    # saved as the one-module layout did: its module held the class
    old_module = types.ModuleType("empathy_distill.evaluation.offline_judge")
    old_module.PairwiseRanker = PairwiseRanker
    with monkeypatch.context() as old_layout:
        old_layout.setitem(sys.modules, old_module.__name__, old_module)
        old_layout.setattr(PairwiseRanker, "__module__", old_module.__name__)
        scorer.save(path)
    names = path.read_bytes()
    assert b"empathy_distill.evaluation.offline_judge" in names
    assert b"empathy_distill.evaluation.offline_judge.model" not in names  # the old class path
    loaded = OfflineScorer.load(path, SpyEmbedder())
    assert isinstance(loaded.model, PairwiseRanker)
    held_out = embed_rows(long_ratings(test), SpyEmbedder())
    assert np.array_equal(loaded.score_embedded(held_out), scorer.score_embedded(held_out))


def test_model_naming_a_class_that_is_gone_asks_to_retrain(tmp_path, monkeypatch):
    import joblib

    retired = types.ModuleType("empathy_distill_retired_scorer")

    class Retired:
        pass

    Retired.__module__, Retired.__qualname__ = retired.__name__, "Retired"
    retired.Retired = Retired
    monkeypatch.setitem(sys.modules, retired.__name__, retired)
    path = tmp_path / "model.joblib"
    joblib.dump({"candidate": {}, "model": Retired()}, path)
    monkeypatch.delitem(sys.modules, retired.__name__)
    with pytest.raises(ConfigError, match=r"model.joblib: not an offline judge model .* retrain"):
        OfflineScorer.load(path)


def test_offline_judge_through_run_judge(frames, fitted, tmp_path, monkeypatch):
    _, test = frames
    scorer = fitted
    path = tmp_path / "model.joblib"
    scorer.save(path)
    row = test.iloc[0]
    items = [
        PairItem("a", row.situation, row.speaker_uttr, "same words here", "same words here"),
        PairItem(
            "b", row.situation, row.speaker_uttr, row.response_chatgpt_empathy, row.response_human
        ),
    ]
    config = {"judges": {"offline": {"backend": "offline", "model": "spy", "margin": 0.05}}}
    monkeypatch.setattr(model, "default_embedder", lambda *a, **k: SpyEmbedder())
    spec, _ = judge_job(config, "offline")
    records = run_judge(spec, items, scorer=path)
    outcomes = combine_orders(records)
    assert outcomes[0].outcome == 0  # identical answers tie
    assert len(records) == 4 and all(r["verdict"] in (0, 1, 2) for r in records)
    assert set(json.loads(records[0]["raw"])) == {"score_1", "score_2"}


def test_embedding_cache_answers_repeats_without_the_model(tmp_path):
    spy = SpyEmbedder()
    cached = CachedEmbedder(spy, tmp_path / "emb.sqlite")
    first = cached.encode(["a b", "c", "a b"])
    assert spy.seen == ["a b", "c"]
    again = CachedEmbedder(spy, tmp_path / "emb.sqlite").encode(["c", "a b"])
    assert spy.seen == ["a b", "c"]
    assert np.allclose(again, first[[1, 0]])


def test_minilm_loads_offline_and_embeds(tmp_path):
    from empathy_distill.evaluation.embeddings import default_embedder

    embedder = default_embedder(tmp_path)
    vectors = embedder.encode([context_text("I lost my job", "I feel awful"), "So sorry."])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_judge_command_line_with_settings_slice(frames, fitted, tmp_path, monkeypatch):
    from empathy_distill.evaluation import judge
    from empathy_distill.evaluation.records import read_jsonl, write_jsonl

    _, test = frames
    fitted.save(tmp_path / "model.joblib")
    monkeypatch.setattr(model, "default_embedder", lambda *a, **k: SpyEmbedder())
    test.head(5).to_csv(tmp_path / "test.csv", index=False)
    # two pairs in one job (vs_base of two models): the scorer is loaded once and rates all
    base, one, two = "s--base", "s--direct--chatgpt--sft", "s--direct--llama--sft"
    columns = {
        base: "response_human",
        one: "response_chatgpt_empathy",
        two: "response_llama_empathy",
    }
    for tag, column in columns.items():
        write_jsonl(
            tmp_path / grid.answer_path(tag),
            [
                {"dialog_id": d, "prompt": "", "answer": str(a), "generation": {}, "seed": 0}
                for d, a in zip(test.head(5)["dialog_id"], test.head(5)[column], strict=True)
            ],
        )
    spec, _ = judge_job(
        {"judges": {"offline": {"backend": "offline", "model": "spy", "margin": 0.05}}}, "offline"
    )
    spec = {**spec, "comparison": "vs_base", "pairs": [[one, base], [two, base]]}
    loads = []
    real_load = model.OfflineScorer.load
    monkeypatch.setattr(
        model.OfflineScorer, "load", classmethod(lambda cls, p: loads.append(p) or real_load(p))
    )
    argv = ["--spec", json.dumps(spec), "--test", str(tmp_path / "test.csv")]
    argv += ["--scorer", str(tmp_path / "model.joblib"), "--root", str(tmp_path)]
    assert judge.main(argv) == 0
    assert len(loads) == 1
    for tag in (one, two):
        records = read_jsonl(tmp_path / grid.judgment_path("offline", tag, base))
        assert len(records) == 10 and {r["judge"] for r in records} == {"offline"}
        # each file holds what judging its pair alone gives
        alone = run_judge(
            spec,
            judge.pair_items(
                tmp_path / "test.csv",
                tmp_path / grid.answer_path(tag),
                tmp_path / grid.answer_path(base),
            ),
            scorer=tmp_path / "model.joblib",
        )
        assert records == alone


def test_rater_debiasing_removes_leniency_but_keeps_author_means():
    # Each rater rates one responder (as in the dataset): "easy" gives 3s, "harsh" 1s to the same
    # author; author B is rated 2 by a neutral rater. Author means must survive (A 2.0, B 2.0
    # here); the lenient rater's ratings must move down and the harsh one's up, symmetrically.
    rows = pd.DataFrame(
        {
            "responder": ["A"] * 4 + ["B"] * 2,
            "annotator": ["easy", "easy", "harsh", "harsh", "mid", "mid"],
            "rating": [3.0, 3.0, 1.0, 1.0, 2.0, 2.0],
        }
    )
    debiased = rater_debiased(rows)
    # offset(easy) = (6 + 5 * 2) / (2 + 5) - 2 = 2 / 7
    assert debiased[:2] == pytest.approx([3 - 2 / 7] * 2)
    assert debiased[2:4] == pytest.approx([1 + 2 / 7] * 2)
    assert debiased[4:] == pytest.approx([2.0, 2.0])
    assert debiased[:4].mean() == pytest.approx(2.0)


def test_dialogue_pairs_orders_only_within_a_dialogue():
    ids = np.array(["a", "a", "a", "b", "b"])
    target = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    better, worse = dialogue_pairs(ids, target)
    assert sorted(zip(better.tolist(), worse.tolist(), strict=True)) == [(0, 1), (2, 1), (3, 4)]


def test_pairwise_ranker_recovers_a_planted_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4))
    quality = x @ np.array([2.0, -1.0, 0.0, 0.0])
    ids = np.repeat(np.arange(200), 5)
    # per-dialogue offsets (a pointwise model must absorb them, the pairwise one ignores them)
    rating = np.digitize(quality + np.repeat(rng.normal(scale=3, size=200), 5), [-1, 1]) + 1.0
    rating = np.where(rng.random(1000) < 0.1, 4 - rating, rating)  # 10 % flipped labels
    ranker = PairwiseRanker(alpha=1.0).fit(x, rating, ids)
    w = ranker.coef_
    assert w[0] > 0 > w[1] and w[0] / -w[1] == pytest.approx(2.0, rel=0.25)
    assert max(abs(w[2]), abs(w[3])) < w[0] / 10
    rows = pd.DataFrame({"dialog_id": ids, "rating": rating})
    learnt = agreement(rows, ranker.predict(x), 0.0)["pairwise_agreement_no_margin"]
    oracle = agreement(rows, quality, 0.0)["pairwise_agreement_no_margin"]  # the true order
    assert learnt >= oracle - 0.01


def test_folds_keep_each_dialogue_on_one_side():
    ids = np.repeat([f"d{i}" for i in range(23)], 5)
    fold = dialogue_folds(ids, 5, seed=1)
    per_dialogue = pd.Series(fold).groupby(ids).nunique()
    assert (per_dialogue == 1).all()
    assert sorted(pd.Series(fold).groupby(ids).first().value_counts()) == [4, 4, 5, 5, 5]


def test_lexical_features_mark_empathy_cues():
    plain, warm = lexical_features(["The bus was late.", "I'm so sorry! How are you feeling?"])
    named = dict(zip(NAMES, warm, strict=True))
    assert named["has_question"] == 1 and named["has_exclamation"] == 1
    assert named["second_person_rate"] == pytest.approx(1 / 7)
    assert named["sympathy_rate"] == pytest.approx(2 / 7)
    assert plain[NAMES.index("second_person_rate")] == 0
    assert lexical_features([]).shape == (0, len(NAMES))


def test_reference_orderings_on_hand_made_ratings():
    def frame(ratings, raters, ids):
        data = {"dialog_id": ids, "situation": "s", "speaker_uttr": "u"}
        for k, responder in enumerate(
            ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
        ):
            data[f"response_{responder}"] = f"text {k}"
            data[f"rating_{responder}"] = [r[k] for r in ratings]
            data[f"annotator_{responder}"] = [f"{responder}-{x[k]}" for x in raters]
        return pd.DataFrame(data)

    # train: chatgpt always 3, human always 1, the rest 2; raters "0" of each responder
    train = frame([[1, 3, 2, 2, 2]] * 4, [["0"] * 5] * 4, [f"t{i}" for i in range(4)])
    # test: the human order matches the author order exactly in dialogue x
    test = frame([[1, 3, 2, 2, 2]], [["0"] * 5], ["x"])
    ref = reference_orderings(train, test)
    # author order decides the 7 differing pairs; leniency offsets are all 0 -> every pair a miss
    assert ref == {"author_mean": 1.0, "rater_leniency": 0.0}


def test_model_trained_by_the_command_loads_in_another_process(frames, tmp_path, monkeypatch):
    """`python -m ...offline_judge.cli` must pickle classes by their importable module name."""
    import runpy
    import subprocess

    from .conftest import REPO_ROOT

    train, test = frames
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    saved = tmp_path / "model.joblib"
    # runpy executes a fresh copy of cli.py, which takes default_embedder from embeddings
    monkeypatch.setattr(embeddings, "default_embedder", lambda *a, **k: SpyEmbedder())
    monkeypatch.delitem(sys.modules, cli.__name__)  # as under `python -m`: not imported yet
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "offline_judge",
            "--spec",
            json.dumps({"margin": 0.05, "seed": 0, "cache_dir": str(tmp_path / "cache")}),
            "--train",
            str(tmp_path / "train.csv"),
            "--test",
            str(tmp_path / "test.csv"),
            "--model-out",
            str(saved),
            "--agreement-out",
            str(tmp_path / "agreement.json"),
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("empathy_distill.evaluation.offline_judge.cli", run_name="__main__")
    assert exit_info.value.code == 0
    assert json.loads((tmp_path / "agreement.json").read_text())["embedder"] == "spy"
    load = (
        "from empathy_distill.evaluation.offline_judge.model import OfflineScorer; "
        f"OfflineScorer.load({str(saved)!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", load],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT / "workflow"), "PATH": "/usr/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
