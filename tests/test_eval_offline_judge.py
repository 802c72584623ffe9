"""The offline judge: trained on train-split ratings only, calibrated scores, judge wiring."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from empathy_distill.errors import LeakageError
from empathy_distill.evaluation.embeddings import CachedEmbedder
from empathy_distill.evaluation.judge import PairItem, combine_orders, run_judge
from empathy_distill.evaluation.offline_judge import (
    OfflineScorer,
    check_disjoint,
    context_text,
    evaluate,
    long_ratings,
    select_and_fit,
)


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
    assert len(scorer.selection) == 16
    # evaluating afterwards uses the test split, but only then
    report = evaluate(scorer, test, margin=0.05)
    assert report["n_dialogues"] == 40 and report["n_pairs"] == 400
    assert 0.0 <= report["pairwise_agreement"] <= report["pairwise_agreement_no_margin"] <= 1.0


def test_overlapping_splits_are_refused(frames):
    train, test = frames
    with pytest.raises(LeakageError, match="test dialogue"):
        check_disjoint(train, pd.concat([test, train.head(1)]))
    scorer = select_and_fit(train, SpyEmbedder())
    with pytest.raises(LeakageError):
        evaluate(scorer, train.head(5), margin=0.05)


def test_scores_are_percentiles_and_survive_save_load(frames, tmp_path):
    train, test = frames
    scorer = select_and_fit(train, SpyEmbedder())
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


def test_offline_judge_through_run_judge(frames, tmp_path, monkeypatch):
    train, test = frames
    scorer = select_and_fit(train, SpyEmbedder())
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
    import empathy_distill.evaluation.offline_judge as offline

    monkeypatch.setattr(offline, "default_embedder", lambda *a, **k: SpyEmbedder())
    records = run_judge(config, "offline", items, offline_model=path)
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


def test_judge_command_line_with_settings_slice(frames, tmp_path, monkeypatch):
    import empathy_distill.evaluation.offline_judge as offline
    from empathy_distill.evaluation import judge
    from empathy_distill.evaluation.records import read_jsonl, write_jsonl

    train, test = frames
    select_and_fit(train, SpyEmbedder()).save(tmp_path / "model.joblib")
    monkeypatch.setattr(offline, "default_embedder", lambda *a, **k: SpyEmbedder())
    test.head(5).to_csv(tmp_path / "test.csv", index=False)
    for name, column in (("a", "response_chatgpt_empathy"), ("b", "response_human")):
        write_jsonl(
            tmp_path / f"{name}.jsonl",
            [
                {"dialog_id": d, "prompt": "", "answer": str(a), "generation": {}, "seed": 0}
                for d, a in zip(test.head(5)["dialog_id"], test.head(5)[column], strict=True)
            ],
        )
    settings = json.dumps(
        {
            "judges": {"offline": {"backend": "offline", "model": "spy", "margin": 0.05}},
            "evaluation": {"paper_faithful": False},
        }
    )
    out = tmp_path / "judgments.jsonl"
    assert (
        judge.main(
            [
                "--settings",
                settings,
                "--judge",
                "offline",
                "--test",
                str(tmp_path / "test.csv"),
                "--model-answers",
                str(tmp_path / "a.jsonl"),
                "--opponent-answers",
                str(tmp_path / "b.jsonl"),
                "--offline-model",
                str(tmp_path / "model.joblib"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert len(read_jsonl(out)) == 10
