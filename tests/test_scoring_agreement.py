"""Scorers against people (issue 13): the scorers score the dataset's own human-rated responses
(``score_responses``), the agreement table, the rater-variance table, the per-dimension change
heatmap, their rules in the DAG and their projected cost. Every expected number is worked out
here, by hand or with scipy / scikit-learn on the same data."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import f_oneway, pearsonr, spearmanr
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from empathy_distill import cost
from empathy_distill.core import grid, runtime, specs
from empathy_distill.core.config import validate_config
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.scoring import agreement, change, rater_variance, responses, table
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.llm.pricing import PriceTable
from tests.servers.openai_server import REFUSE, OpenAIServer

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

SYNTHETIC = REPO_ROOT / "tests" / "data" / "synthetic_dataset.csv"
PRICES = REPO_ROOT / "resources" / "prices.yaml"
PROMPTS = json.loads((REPO_ROOT / "resources" / "scoring_prompts.json").read_text("utf-8"))
SUFFIXES = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
CHAT = "POST /v1/chat/completions"
CONTRACT = {
    "dialog_id",
    "scorer",
    "kind",
    "variant",
    "scores",
    "valid",
    "problem",
    "refusal",
    "raw",
    "model",
    "usage",
    "request_key",
    "responder",
    "annotator",
    "human_rating",
}


def planted(messages):
    """The reply planted in the response text as ``plant<reply>``."""
    return re.search(r"plant<(.*?)>", messages[-1]["content"]).group(1)


def config_for(server_url, tmp_path, kind="rating", **scoring):
    return validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "scoring": {
                "scorers": {
                    "local": {
                        "kind": kind,
                        "backend": "openai_compatible",
                        "model": "local-scorer",
                        "base_url": server_url,
                    }
                },
                "grid": ["local"],
                **scoring,
            },
        }
    )


def planted_split(n_dialogues=6):
    """The first dialogues of the synthetic dataset; each response carries the rating the
    server answers: the human rating, except a planted pattern of misses, one invalid reply
    ("5") and one refusal. Raters: three raters share the human responses (for within-rater)."""
    frame = pd.read_csv(SYNTHETIC, dtype={"dialog_id": str}).head(n_dialogues).copy()
    replies = {}
    for i, row in frame.iterrows():
        for j, suffix in enumerate(SUFFIXES):
            human = int(row[f"rating_{suffix}"])
            reply = str(human if (i + j) % 3 else min(3, human + 1) if j % 2 else max(1, human - 1))
            if (i, j) == (1, 2):
                reply = "5"
            replies[(i, suffix)] = reply
            tail = f" {REFUSE}" if (i, j) == (3, 4) else ""
            frame.loc[i, f"response_{suffix}"] = f"{row[f'response_{suffix}']} plant<{reply}>{tail}"
        frame.loc[i, "annotator_human"] = f"rater{i % 3}"
        frame.loc[i, "annotator_chatgpt_empathy"] = f"crater{i % 2}"
    return frame, replies


def run_responses(tmp_path, monkeypatch, config, split_csv, out):
    spec, run = scoring_specs.score_answers(config, "local"), runtime.runtime_part(config)
    monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(run))
    argv = ["--spec", specs.dumps(spec), "--split", str(split_csv), "--out", str(out)]
    assert responses.main([*argv, "--cost-report", str(tmp_path / "costs.csv")]) == 0


def independent_pairwise(valid: pd.DataFrame, column: str) -> tuple[int, int, int]:
    """(pairs, same order, ties) by a self-join of the responses of each dialogue."""
    pairs = valid.merge(valid, on="dialog_id")
    pairs = pairs[pairs["human_rating_x"] > pairs["human_rating_y"]]
    diff = pairs[f"{column}_x"] - pairs[f"{column}_y"]
    return len(pairs), int((diff > 0).sum()), int((diff == 0).sum())


def test_rating_scorer_on_the_responses_and_its_agreement_row(tmp_path, monkeypatch, capsys):
    frame, replies = planted_split()
    frame.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / grid.SCORES.format(scorer="local", answers="responses_test")
    out.parent.mkdir(parents=True)
    with OpenAIServer(answer_fn=planted) as server:
        config = config_for(server.url, tmp_path)
        run_responses(tmp_path, monkeypatch, config, tmp_path / "test.csv", out)
        # identical requests (two LLMs wrote the same text, same reply planted) are asked once
        distinct = {
            (r["situation"], r["speaker_uttr"], r[f"response_{s}"])
            for r in frame.to_dict("records")
            for s in SUFFIXES
        }
        assert server.counts[CHAT] == len(distinct) > 20
        run_responses(tmp_path, monkeypatch, config, tmp_path / "test.csv", tmp_path / "b.jsonl")
        assert server.counts[CHAT] == len(distinct)  # the rerun is answered by the cache
    records = read_jsonl(out)
    assert records == read_jsonl(tmp_path / "b.jsonl")
    assert "30 responses scored, 1 invalid replies, 1 refused" in capsys.readouterr().out
    assert all(set(r) == CONTRACT for r in records)
    expected_keys = [(str(d), s) for d in frame["dialog_id"] for s in SUFFIXES]
    assert [(r["dialog_id"], r["responder"]) for r in records] == expected_keys
    for r in records:
        row = frame[frame["dialog_id"] == r["dialog_id"]].iloc[0]
        assert r["annotator"] == row[f"annotator_{r['responder']}"]
        assert r["human_rating"] == row[f"rating_{r['responder']}"]
        reply = replies[(int(row.name), r["responder"])]
        if r["refusal"] is None and reply != "5":
            assert r["scores"] == [int(reply)] and r["valid"]
    assert [r["valid"] for r in records].count(False) == 2

    # the agreement table, checked with scikit-learn / scipy on the same data
    monkeypatch.chdir(tmp_path)
    spec = scoring_specs.scorer_agreement(config) | {"within_rater_min": 2}
    assert agreement.main(["--spec", specs.dumps(spec), "--out", "agreement.csv"]) == 0
    result = pd.read_csv("agreement.csv")
    row = result[result["section"] == "vs_human"].iloc[0]
    valid = pd.DataFrame(
        [
            {
                "dialog_id": r["dialog_id"],
                "annotator": r["annotator"],
                "human_rating": r["human_rating"],
                "s": r["scores"][0],
            }
            for r in records
            if r["valid"]
        ]
    )
    assert (row["n"], row["n_valid"], row["n_invalid"], row["n_refused"]) == (30, 28, 1, 1)
    assert row["accuracy"] == pytest.approx(accuracy_score(valid["human_rating"], valid["s"]))
    assert row["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(valid["human_rating"], valid["s"])
    )
    assert row["spearman"] == pytest.approx(spearmanr(valid["s"], valid["human_rating"])[0])
    pairs, same, ties = independent_pairwise(valid, "s")
    assert pairs > 0 and row["pairs"] == pairs
    assert row["pairwise_agreement"] == pytest.approx(same / pairs)
    assert row["pairwise_ties"] == pytest.approx(ties / pairs)
    assert row["pairwise_agreement_untied"] == pytest.approx(same / (pairs - ties))
    # within rater: annotators with >= 2 valid responses, weighted by their count
    groups = [g for _, g in valid.groupby("annotator") if len(g) >= 2]
    weights = [len(g) for g in groups]
    assert row["within_rater_raters"] == len(groups) == 5  # rater0-2 (human), crater0-1
    assert row["within_rater_n"] == sum(weights)
    accuracies = [accuracy_score(g["human_rating"], g["s"]) for g in groups]
    assert row["within_rater_accuracy"] == pytest.approx(np.average(accuracies, weights=weights))
    rhos = [(spearmanr(g["s"], g["human_rating"])[0], len(g)) for g in groups]
    rhos = [(rho, n) for rho, n in rhos if not np.isnan(rho)]
    assert row["within_rater_spearman"] == pytest.approx(
        sum(rho * n for rho, n in rhos) / sum(n for _, n in rhos)
    )
    reported = result[result["section"] == "reported"]
    assert reported["accuracy"].tolist()[:2] == [0.5469, 0.5365]
    assert "no MITI codes" in reported["note"].iloc[1]
    assert reported["protocol"].str.contains("balanced").all()


def record(dialog_id, responder, annotator, human, scores, kind="rating", valid=True):
    return {
        "dialog_id": dialog_id,
        "scorer": "x",
        "kind": kind,
        "variant": "v",
        "scores": scores if valid else None,
        "valid": valid,
        "problem": None if valid else "bad",
        "refusal": None,
        "raw": "",
        "model": "m",
        "usage": {},
        "request_key": None,
        "responder": responder,
        "annotator": annotator,
        "human_rating": human,
    }


def sub(c, a, p):
    """15 subfactor scores whose dimension means are c, a, p."""
    return [c] * 5 + [a] * 5 + [p] * 5


def test_agreement_table_by_hand(tmp_path, monkeypatch):
    """Two dialogues x 4 responses; a subfactor scorer, a rating scorer and a classifier file."""
    humans = {("d1", "r1"): 3, ("d1", "r2"): 1, ("d1", "r3"): 2, ("d1", "r4"): 2}
    humans |= {("d2", "r1"): 1, ("d2", "r2"): 3, ("d2", "r3"): 2, ("d2", "r4"): 3}
    raters = {k: "A" for k in humans} | {("d1", "r3"): "B", ("d1", "r4"): "B", ("d2", "r4"): "B"}
    subfactors = {
        ("d1", "r1"): sub(8, 8, 8),
        ("d1", "r2"): sub(2, 8, 2),
        ("d1", "r3"): sub(5, 5, 5),
        ("d1", "r4"): None,  # invalid
        ("d2", "r1"): sub(4, 4, 4),
        ("d2", "r2"): sub(4, 6, 4),
        ("d2", "r3"): sub(6, 2, 6),
        ("d2", "r4"): sub(9, 9, 9),
    }
    ratings = {("d1", "r1"): 3, ("d1", "r2"): 2, ("d1", "r3"): 2, ("d1", "r4"): 1}
    ratings |= {("d2", "r1"): 1, ("d2", "r2"): 2, ("d2", "r3"): 3, ("d2", "r4"): 3}
    classifier = dict.fromkeys(humans, 2)
    files = {}
    for name, kind, scores in (
        ("sub", "subfactors", subfactors),
        ("rate", "rating", {k: [v] for k, v in ratings.items()}),
        ("clf", "classifier", {k: [v] for k, v in classifier.items()}),
    ):
        path = tmp_path / f"{name}.jsonl"
        write_jsonl(
            path,
            [
                record(
                    d,
                    r,
                    raters[(d, r)],
                    humans[(d, r)],
                    scores[(d, r)],
                    kind,
                    scores[(d, r)] is not None,
                )
                for d, r in humans
            ],
        )
        files[name] = path
    result = agreement.agreement_table(files, minimum=3)
    human = result[result["section"] == "vs_human"].set_index(["scorer", "measure"])

    # rating scorer, right or not:
    # d1: 3/3 1/2 2/2 2/1 -> right: r1, r3; d2: 1/1 3/2 2/3 3/3 -> right: r1, r4
    rate = human.loc[("rate", "rating")]
    assert rate["accuracy"] == pytest.approx(4 / 8)
    # recall per class: 1: {d1r2 -> 2, d2r1 -> 1} = 1/2; 2: {d1r3 -> 2, d1r4 -> 1, d2r3 -> 3}
    # = 1/3; 3: {d1r1 -> 3, d2r2 -> 2, d2r4 -> 3} = 2/3
    assert rate["balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 3 + 2 / 3) / 3)
    # pairs with different human ratings: d1: (r1,r2) (r1,r3) (r1,r4) (r2,r3) (r2,r4) = 5;
    # d2: (r1,r2) (r1,r3) (r1,r4) (r2,r3) (r3,r4) = 5. Rating scorer:
    # d1: 3>2 ok, 3>2 ok, 3>1 ok, 2=2 tie, 2>1 wrong -> 3 ok, 1 tie
    # d2: 1<2 ok, 1<3 ok, 1<3 ok, 2<3 wrong, 3=3 tie -> 3 ok, 1 tie
    assert rate["pairs"] == 10
    assert rate["pairwise_agreement"] == pytest.approx(6 / 10)
    assert rate["pairwise_ties"] == pytest.approx(2 / 10)
    assert rate["pairwise_agreement_untied"] == pytest.approx(6 / 8)
    # within rater (>= 3 responses: A has 5, B has 3), human/scorer: A: d1r1 3/3, d1r2 1/2,
    # d2r1 1/1, d2r2 3/2, d2r3 2/3 -> 2/5; B: d1r3 2/2, d1r4 2/1, d2r4 3/3 -> 2/3
    assert (rate["within_rater_raters"], rate["within_rater_n"]) == (2, 8)
    assert rate["within_rater_accuracy"] == pytest.approx((5 * 2 / 5 + 3 * 2 / 3) / 8)
    rho_a = spearmanr([3, 2, 1, 2, 3], [3, 1, 1, 3, 2])[0]
    rho_b = spearmanr([2, 1, 3], [2, 2, 3])[0]
    assert rate["within_rater_spearman"] == pytest.approx((5 * rho_a + 3 * rho_b) / 8)

    # subfactor scorer: one invalid; the 15-mean and each dimension
    mean15 = human.loc[("sub", "mean_15")]
    assert (mean15["n"], mean15["n_valid"], mean15["n_invalid"]) == (8, 7, 1)
    assert np.isnan(mean15["accuracy"])
    keys = [k for k in humans if subfactors[k] is not None]
    means = [np.mean(subfactors[k]) for k in keys]
    assert mean15["spearman"] == pytest.approx(spearmanr(means, [humans[k] for k in keys])[0])
    # mean_15 pairs (d1r4 invalid): d1: (r1,r2) 8 > 4 ok, (r1,r3) 8 > 5 ok, (r2,r3) 4 < 5 ok;
    # d2: (r1,r2) 4 < 4.67 ok, (r1,r3) 4 < 4.67 ok, (r1,r4) 4 < 9 ok, (r2,r3) 4.67 = 4.67 tie,
    # (r3,r4) 4.67 < 9 ok -> 7 ok, 1 tie of 8
    assert mean15["pairs"] == 8
    assert mean15["pairwise_agreement"] == pytest.approx(7 / 8)
    assert mean15["pairwise_ties"] == pytest.approx(1 / 8)
    affective = human.loc[("sub", "affective")]
    # affective: d1: 8 vs 8 tie, 8 > 5 ok, 8 > 5 wrong (r2 1 < r3 2); d2: 4 < 6 ok, 4 > 2 wrong,
    # 4 < 9 ok, 6 > 2 ok, 2 < 9 ok -> 5 ok, 1 tie of 8
    assert affective["pairwise_agreement"] == pytest.approx(5 / 8)
    assert affective["pairwise_ties"] == pytest.approx(1 / 8)
    aff = [subfactors[k][5] for k in keys]
    assert affective["spearman"] == pytest.approx(spearmanr(aff, [humans[k] for k in keys])[0])

    # a classifier (one score per record) is a rating scorer; constant -> Spearman undefined
    clf = human.loc[("clf", "rating")]
    assert clf["accuracy"] == pytest.approx(3 / 8)  # human 2: d1r3, d1r4, d2r3
    assert np.isnan(clf["spearman"]) and clf["pairwise_ties"] == 1.0

    # scorer vs scorer: all three pairs, in config order
    versus = result[result["section"] == "vs_scorer"].set_index(["scorer", "reference"])
    assert list(versus.index) == [("sub", "rate"), ("sub", "clf"), ("rate", "clf")]
    sr = versus.loc[("sub", "rate")]
    assert sr["n"] == 7 and np.isnan(sr["exact_agreement"])
    assert sr["spearman"] == pytest.approx(spearmanr(means, [ratings[k] for k in keys])[0])
    rc = versus.loc[("rate", "clf")]
    assert rc["n"] == 8 and rc["exact_agreement"] == pytest.approx(3 / 8)  # rate == 2 thrice
    assert len(result[result["section"] == "reported"]) == 3


# --- rater variance ------------------------------------------------------------------------------
def variance_frame(ratings, annotators, propensity):
    """A split table of len(ratings) dialogues from lists per responder."""
    rows = []
    for i in range(len(ratings)):
        row = {"dialog_id": f"d{i}", "situation": "s", "speaker_uttr": "u"}
        for j, suffix in enumerate(SUFFIXES):
            row[f"response_{suffix}"] = "r"
            row[f"rating_{suffix}"] = ratings[i][j]
            row[f"annotator_{suffix}"] = annotators[i][j]
            row[f"empathy_propensity_{suffix}"] = propensity[annotators[i][j]]
        rows.append(row)
    return pd.DataFrame(rows)


def test_rater_variance_by_hand(tmp_path):
    train_ratings = [[3, 2, 2, 1, 3], [3, 1, 2, 2, 3]]
    test_ratings = [[2, 1, 3, 1, 3], [1, 2, 3, 1, 2]]
    annotators = [["h1", "c1", "l1", "g1", "m1"], ["h1", "c2", "l1", "g2", "m1"]]
    propensity = {"h1": 40, "c1": 20, "c2": 30, "l1": 50, "g1": 10, "g2": 35, "m1": 60}
    variance_frame(train_ratings, annotators, propensity).to_csv(tmp_path / "tr.csv", index=False)
    variance_frame(test_ratings, annotators, propensity).to_csv(tmp_path / "te.csv", index=False)
    out = tmp_path / "rv.csv"
    assert (
        rater_variance.main(
            [
                "--train",
                str(tmp_path / "tr.csv"),
                "--test",
                str(tmp_path / "te.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = pd.read_csv(out).set_index(["split", "factor"])
    # test split by responder: groups (2,1) (1,2) (3,3) (1,1) (3,2); grand mean 19/10 = 1.9
    y = np.array(test_ratings, dtype=float)
    ss_total = ((y - 1.9) ** 2).sum()  # 6.9
    # 2 * (0.4^2 + 0.4^2 + 1.1^2 + 0.9^2 + 0.6^2) = 5.4
    ss_between = sum(2 * (y[:, j].mean() - 1.9) ** 2 for j in range(5))
    assert ss_total == pytest.approx(6.9) and ss_between == pytest.approx(5.4)
    row = result.loc[("test", "responder")]
    assert (row["n"], row["groups"]) == (10, 5)
    assert row["eta_squared"] == pytest.approx(5.4 / 6.9)
    msb, msw = 5.4 / 4, (6.9 - 5.4) / 5
    assert row["f_statistic"] == pytest.approx(msb / msw)
    assert row["p_value"] == pytest.approx(f_oneway(*[y[:, j] for j in range(5)]).pvalue)
    assert row["icc1"] == pytest.approx((msb - msw) / (msb + (2 - 1) * msw))  # k = 2 each
    # by annotator, unequal groups: h1 {2,1}, c1 {1}, c2 {2}, l1 {3,3}, g1 {1}, g2 {1}, m1 {3,2}
    groups = {"h1": [2, 1], "c1": [1], "c2": [2], "l1": [3, 3], "g1": [1], "g2": [1], "m1": [3, 2]}
    ssb = sum(len(v) * (np.mean(v) - 1.9) ** 2 for v in groups.values())
    ssw = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in groups.values())
    msb, msw = ssb / (7 - 1), ssw / (10 - 7)
    k0 = (10 - (4 + 1 + 1 + 4 + 1 + 1 + 4) / 10) / (7 - 1)  # = 8.4 / 6 = 1.4
    row = result.loc[("test", "annotator")]
    assert row["groups"] == 7
    assert row["eta_squared"] == pytest.approx(ssb / (ssb + ssw))
    assert row["icc1"] == pytest.approx((msb - msw) / (msb + (k0 - 1) * msw))
    # by dialogue: d0 mean 2, d1 mean 1.8
    row = result.loc[("test", "dialog_id")]
    assert row["eta_squared"] == pytest.approx((5 * 0.1**2 + 5 * 0.1**2) / 6.9)
    # all = both splits together, 20 ratings
    both = np.concatenate([np.ravel(train_ratings), np.ravel(test_ratings)]).astype(float)
    by_responder = [both.reshape(4, 5)[:, j] for j in range(5)]
    ssb = sum(4 * (g.mean() - both.mean()) ** 2 for g in by_responder)
    assert result.loc[("all", "responder"), "eta_squared"] == pytest.approx(
        ssb / ((both - both.mean()) ** 2).sum()
    )
    # propensity vs rating, per response (test) and per rater (rater means, all)
    prop = [propensity[a] for row in annotators for a in row]
    row = result.loc[("test", "empathy_propensity")]
    assert row["spearman"] == pytest.approx(spearmanr(prop, np.ravel(test_ratings))[0])
    assert row["pearson"] == pytest.approx(pearsonr(prop, np.ravel(test_ratings))[0])
    means = {a: np.mean(v) for a, v in groups.items()}
    row = result.loc[("test", "empathy_propensity_rater_mean")]
    names = sorted(means)
    assert row["groups"] == 7
    assert row["spearman"] == pytest.approx(
        spearmanr([propensity[a] for a in names], [means[a] for a in names])[0]
    )


def test_a_rating_outside_1_to_3_is_named(tmp_path, capsys):
    frame = variance_frame(
        [[3, 2, 2, 1, 3]], [["a", "b", "c", "d", "e"]], dict.fromkeys("abcde", 1)
    )
    frame.loc[0, "rating_gemini_empathy"] = 4
    frame.to_csv(tmp_path / "bad.csv", index=False)
    argv = ["--train", str(tmp_path / "bad.csv"), "--test", str(tmp_path / "bad.csv")]
    assert rater_variance.main([*argv, "--out", str(tmp_path / "o.csv")]) == 1
    message = capsys.readouterr().err
    assert "bad.csv: row 1, column rating_gemini_empathy: 4 is not a rating 1-3" in message


# --- heatmap -------------------------------------------------------------------------------------
def test_change_heatmap_values_are_the_table_differences(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_for("http://127.0.0.1:9/v1", tmp_path, kind="subfactors")
    tags = ["s--base", "s--direct--chatgpt--sft", "s--direct--chatgpt--dpo"]
    # per dialogue (cognitive, affective, compassionate) of 6 dialogues
    base = [(2, 4, 3), (7, 6, 3), (4, 4, 7), (6, 6, 5), (5, 5, 4), (3, 5, 4)]
    sft = [(5, 4, 3), (10, 6, 3), (7, 4, 7), (9, 6, 5), (8, 5, 4), (6, 1, 1)]
    dpo = [(2, 9, 3), (7, 1, 4), (4, 4, 7), (6, 6, 5), (5, 5, 6), (3, 2, 2)]
    for tag, rows in zip(tags, (base, sft, dpo), strict=True):
        path = tmp_path / grid.score_path("local", tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(
            path,
            [
                record(f"d{i}", "", "", 1, sub(*dims) if dims else None, "subfactors", bool(dims))
                | {"variant": "v2"}
                for i, dims in enumerate(rows)
            ],
        )
    spec = scoring_specs.empathy_scores(config) | {"answer_tags": tags}
    assert table.main(["--spec", specs.dumps(spec), "--out", "empathy.csv"]) == 0
    spec = scoring_specs.empathy_change(config, "local")
    argv = ["--spec", specs.dumps(spec), "--table", "empathy.csv", "--values", "v.csv"]
    assert change.main([*argv, "--out", "fig.png"]) == 0
    scores = pd.read_csv("empathy.csv").set_index(["answer_set", "measure"])["mean"]
    values = pd.read_csv("v.csv").set_index(["answer_set", "measure"])
    assert len(values) == 6
    for (tag, measure), row in values.iterrows():
        assert row["change"] == pytest.approx(scores[(tag, measure)] - scores[("s--base", measure)])
    # by hand: SFT cognitive is base + 3 on every dialogue: the paired interval is [3, 3]
    sft_c = values.loc[("s--direct--chatgpt--sft", "cognitive")]
    assert (sft_c["change"], sft_c["ci_low"], sft_c["ci_high"]) == pytest.approx((3, 3, 3))
    assert sft_c["significant"]
    # SFT affective: base mean 5; SFT mean (4+6+4+6+5+1)/6 = 13/3, change -2/3
    assert values.loc[("s--direct--chatgpt--sft", "affective"), "change"] == pytest.approx(-2 / 3)
    # DPO cognitive: the base's scores, change 0, interval [0, 0], not marked
    dpo_c = values.loc[("s--direct--chatgpt--dpo", "cognitive")]
    assert (dpo_c["change"], dpo_c["ci_low"], dpo_c["ci_high"]) == pytest.approx((0, 0, 0))
    assert not dpo_c["significant"]
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- cost and the DAG --------------------------------------------------------------------------
def tokens(*texts):
    """The documented rule, restated: ceil(chars/4) + 3 per message + 3."""
    return sum(math.ceil(len(t) / 4) + 3 for t in texts) + 3


def test_cost_counts_the_responses_of_each_scored_split(tmp_path, train, test_split):
    overlay = {
        "distillation": {"methods": {"direct": ["chatgpt"]}},
        "grid": {"students": ["s"], "judges": []},
        "evaluation": {"comparisons": ["vs_base"]},
    }
    scorer = {"kind": "rating", "backend": "openai", "model": "gpt-4o-mini", "mode": "batch"}
    config = validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "scoring": {
                "scorers": {"local": scorer},
                "grid": ["local"],
                "human_responses": ["train", "test"],
            },
            **overlay,
        }
    )
    train2, test2 = train.head(3), test_split.head(2)
    rows = {r.part: r for r in cost.project(config, train2, test2) if r.stage == "scorer:local"}
    part = PROMPTS["rating_1_to_3"]
    for split, frame in (("test", test2), ("train", train2)):
        expected = sum(
            tokens(
                part["system"],
                f"{part['instructions']['naive']} \n Situation: '{r['situation']}' \n Speaker"
                f" Utterance: '{r['speaker_uttr']}' \n Response: '{r[f'response_{s}']}' ",
            )
            for r in frame.to_dict("records")
            for s in SUFFIXES
        )
        row = rows[f"responses_{split}"]
        assert (row.requests, row.input_tokens) == (5 * len(frame), expected)
        # one digit is asked for; each reply is projected at its worst case, the scorer's
        # output cap (max_new_tokens, schema default 256; gpt-4o-mini does not think)
        assert row.output_tokens == 256 * row.requests
        price = PriceTable.load(PRICES).price("openai", "gpt-4o-mini", "batch")
        assert row.cost_usd == pytest.approx(price.cost(row.input_tokens, row.output_tokens))
    config["scoring"]["human_responses"] = ["test"]
    parts = {r.part for r in cost.project(config, train2, test2) if r.stage == "scorer:local"}
    assert parts == {"base", "model", "responses_test"}


def test_cost_of_an_openai_fine_tuned_scorer_counts_training_at_fine_tuned_rates(
    tmp_path, train, test_split
):
    """Training: every train-split response as one example (system, user, the rating digit),
    estimated tokens x epochs x $3.00 / 1M; use: the fine-tuned model's Batch rates, half of
    $0.30 / $1.20 per 1M (OpenAI's pricing page)."""
    overlay = {
        "distillation": {"methods": {"direct": ["chatgpt"]}},
        "grid": {"students": ["s"], "judges": []},
        "evaluation": {"comparisons": ["vs_base"]},
    }
    scorer = {
        "kind": "rating",
        "backend": "openai",
        "model": "gpt-4o-mini",
        "mode": "batch",
        "finetune": {"base_model": "gpt-4o-mini-2024-07-18", "epochs": 2},
    }
    config = validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "scoring": {"scorers": {"ft": scorer}, "grid": ["ft"]},
            **overlay,
        }
    )
    train2, test2 = train.head(3), test_split.head(2)
    rows = {r.part: r for r in cost.project(config, train2, test2) if r.stage == "scorer:ft"}
    part = PROMPTS["rating_1_to_3"]
    examples = [
        tokens(
            part["system"],
            f"{part['instructions']['naive']} \n Situation: '{r['situation']}' \n Speaker"
            f" Utterance: '{r['speaker_uttr']}' \n Response: '{r[f'response_{s}']}' ",
            str(r[f"rating_{s}"]),
        )
        for r in train2.to_dict("records")
        for s in SUFFIXES
    ]
    training = rows["fine_tuning"]
    assert (training.requests, training.mode) == (15, "training")
    assert training.input_tokens == 2 * sum(examples)
    assert training.cost_usd == pytest.approx(2 * sum(examples) * 3.00 / 1e6)
    use = rows["responses_test"]
    assert use.cost_usd == pytest.approx(
        use.input_tokens * 0.15 / 1e6 + use.output_tokens * 0.60 / 1e6
    )


def planned(output: str, rule: str) -> set[str]:
    blocks = [b for b in output.split("\nrule ") if b.startswith(f"{rule}:")]
    # a job with several outputs (score_answers: one per answer set) lists them joined by ", "
    return {
        out for b in blocks for out in b.split("output: ", 1)[1].splitlines()[0].strip().split(", ")
    }


@pytest.mark.parametrize("splits", [None, ["test", "train"]])
def test_dry_run_plans_the_responses_tables_and_figure(dataset_path, tmp_path, splits):
    scoring = {
        "prompts": str(REPO_ROOT / "resources" / "scoring_prompts.json"),
        "scorers": {
            "local": {
                "kind": "subfactors",
                "backend": "openai_compatible",
                "model": "m",
                "base_url": "http://127.0.0.1:9/v1",
            }
        },
        "grid": ["local"],
    }
    if splits:
        scoring["human_responses"] = splits
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        "grid": {"students": ["tiny"], "judges": ["offline"]},
        "evaluation": {"comparisons": ["vs_base"]},
        "scoring": scoring,
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    expected = {"results/scores/local/responses_test.jsonl"}
    if splits:
        expected.add("results/scores/local/responses_train.jsonl")
    assert planned(output, "score_responses") == expected
    assert planned(output, "scorer_agreement") == {"results/tables/scorer_agreement.csv"}
    assert planned(output, "rater_variance") == {"results/tables/rater_variance.csv"}
    assert "results/figures/empathy_change_local.png" in output
    assert output.count("\nrule figure_empathy_change:") == 1
    # the answer sets are still scored by score_answers, not by score_responses
    assert "results/scores/local/tiny/base.jsonl" in planned(output, "score_answers")


def test_without_a_scorer_only_the_rater_variance_is_planned(dataset_path, tmp_path):
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        "grid": {"students": ["tiny"], "judges": ["offline"]},
        "evaluation": {"comparisons": ["vs_base"]},
        "scoring": {"grid": []},  # config.yaml's scorers left out
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert planned(output, "rater_variance") == {"results/tables/rater_variance.csv"}
    for rule in ("score_answers", "score_responses", "scorer_agreement", "figure_empathy_change"):
        assert f"\nrule {rule}:" not in output


def test_pairs_are_counted_once_per_unordered_pair():
    """Guard for the by-hand helper: a dialogue of 3 distinct ratings has 3 pairs."""
    frame = pd.DataFrame(
        {"dialog_id": ["d"] * 3, "human_rating": [1, 2, 3], "s": [1, 2, 3], "annotator": "a"}
    )
    assert independent_pairwise(frame, "s") == (3, 3, 0)
    assert len(list(itertools.combinations(range(3), 2))) == 3
