"""Empathy scorers of the companion study (Xie et al., IEEE BigData 2024, arXiv:2412.20264):
its prompts byte for byte, robust parsing, invalid and refused replies counted, per-dimension
means and bootstrap intervals, the rules in the DAG and their projected cost."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from empathy_distill import cost
from empathy_distill.core import grid, runtime, specs
from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.scoring import score, table
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.evaluation.scoring.parse import parse_reply
from empathy_distill.evaluation.scoring.prompts import scoring_prompt
from empathy_distill.llm.pricing import PriceTable
from tests.servers.openai_server import REFUSE, OpenAIServer

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

SHIPPED = REPO_ROOT / "resources" / "scoring_prompts.json"
RAW = json.loads(SHIPPED.read_text(encoding="utf-8"))
V2 = RAW["subfactors_1_to_10"]["v2_names"]
V2_NAMES = V2["cognitive"] + V2["affective"] + V2["compassionate"]
CHAT = "POST /v1/chat/completions"
PRICES = REPO_ROOT / "resources" / "prices.yaml"


# --- prompts ---------------------------------------------------------------------------------
SITUATION = "I lost my {response} keys \u2019again\u2019"
UTTERANCE = "Ugh, {context}."
RESPONSE = "That's rough.\nHang in there {x}!"


@pytest.mark.parametrize("variant", list(RAW["rating_1_to_3"]["instructions"]))
def test_rating_messages_are_the_studys_f_string(variant):
    part = RAW["rating_1_to_3"]
    instructions = part["instructions"][variant]
    # the study's f-string, written out (braces in the dialogue stay as they are)
    expected = (
        f"{instructions} \n Situation: '{SITUATION}' \n Speaker Utterance: '{UTTERANCE}' \n"
        f" Response: '{RESPONSE}' "
    )
    system, user = scoring_prompt("rating", variant).messages(SITUATION, UTTERANCE, RESPONSE)
    assert (system, user) == (part["system"], expected)


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_subfactor_messages_are_the_studys_lines(variant):
    part = RAW["subfactors_1_to_10"]
    expected = (
        part[f"instructions_{variant}"]
        + "\nSituation: "
        + SITUATION
        + "\nSpeaker Utterance: "
        + UTTERANCE
        + "\nResponse: "
        + RESPONSE
        + "\nScore:"
    )
    system, user = scoring_prompt("subfactors", variant).messages(SITUATION, UTTERANCE, RESPONSE)
    assert (system, user) == (part["system"], expected)


def test_subfactor_names_five_per_dimension():
    assert scoring_prompt("subfactors").names == tuple(V2_NAMES)  # v2 is the default
    v1 = scoring_prompt("subfactors", "v1").names
    assert len(v1) == 15 and v1[0] == "Perspective-Taking" and v1[-1] == "Practical Assistance"
    assert v1[5] == "Emotional Resonance" and v1[10] == "Emotional Concern"  # dimension starts


# --- parsing ---------------------------------------------------------------------------------
SCORES = [*list(range(1, 11)), 10, 9, 8, 7, 6]
SUB = scoring_prompt("subfactors", "v2")
RATE = scoring_prompt("rating", "naive")


def json_pairs(scores, names=V2_NAMES):
    return json.dumps([[n, s] for n, s in zip(names, scores, strict=True)])


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (json_pairs(SCORES), SCORES),
        ("```json\n" + json_pairs(SCORES) + "\n```", SCORES),
        # JSON in another order is read by name
        (json.dumps(dict(reversed(list(zip(V2_NAMES, SCORES, strict=True))))), SCORES),
        (
            json.dumps(
                {
                    "scores": [
                        {"name": n, "score": s} for n, s in zip(V2_NAMES, SCORES, strict=False)
                    ]
                }
            ),
            SCORES,
        ),
        # the study's reading: every integer in order
        (" ".join(str(s) for s in SCORES), SCORES),
        ("\n".join(f"- {n}: {s}" for n, s in zip(V2_NAMES, SCORES, strict=True)), SCORES),
        (" ".join(str(s) for s in SCORES[:14]), None),  # too few
        (" ".join(str(s) for s in [*SCORES, 3]), None),  # too many
        (" ".join(str(s) for s in [0, *SCORES[1:]]), None),  # out of range
        (" ".join(str(s) for s in [11, *SCORES[1:]]), None),
        (" ".join(str(s) for s in ["7.5", *SCORES[1:]]), None),  # a decimal is no integer
        (json_pairs([7.5, *SCORES[1:]]), None),
        ("", None),
    ],
)
def test_subfactor_replies(reply, expected):
    parsed = parse_reply(reply, SUB)
    assert parsed.scores == (tuple(expected) if expected else None)
    assert parsed.valid == (expected is not None)
    assert (parsed.problem is None) == (expected is not None)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("2", 2),
        ("Empathy Score: 3", 3),
        ("Score: 1.", 1),
        ('{"score": 2}', 2),
        ("4", None),
        ("2 or 3", None),
        ("0", None),
        ("2.5", None),
        ("", None),
    ],
)
def test_rating_replies(reply, expected):
    assert parse_reply(reply, RATE).scores == ((expected,) if expected else None)


# --- against a local OpenAI-compatible server -------------------------------------------------
def planted_reply(messages):
    """The reply planted in the answer: 'plant:<reply>' after 'Response: ' in the prompt."""
    return messages[-1]["content"].split("plant:", 1)[1].split("\nScore:", 1)[0]


def dialogues(n):
    return pd.DataFrame(
        {
            "dialog_id": [f"d{i}" for i in range(n)],
            "situation": [f"situation {i}" for i in range(n)],
            "speaker_uttr": [f"utterance {i}" for i in range(n)],
        }
    )


def write_answers(path, test, replies):
    rows = [
        {"dialog_id": d, "prompt": "", "answer": f"ans {d} plant:{r}", "generation": {}, "seed": 0}
        for d, r in zip(test["dialog_id"], replies, strict=True)
    ]
    write_jsonl(path, rows)


def scoring_config(server, tmp_path, kind="subfactors", variant=None):
    return validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "scoring": {
                "scorers": {
                    "local": {
                        "kind": kind,
                        "variant": variant,
                        "backend": "openai_compatible",
                        "model": "local-scorer",
                        "base_url": server.url,
                    }
                },
                "grid": ["local"],
            },
            "evaluation": {"bootstrap_samples": 500, "seed": 7},
        }
    )


#: What the server answers for the base model's 8 answers: 5 valid (JSON or integer lists), one
#: with 14 numbers, one with an 11, one refused.
BASE = [
    [8] * 5 + [6] * 5 + [4] * 5,
    [7, 7, 7, 7, 6] + [5] * 5 + [3, 3, 3, 3, 4],
    [9] * 5 + [9] * 5 + [9] * 5,
    [6] * 5 + [8] * 5 + [2] * 5,
    [5, 6, 7, 8, 9] + [1, 2, 3, 4, 5] + [10] * 5,
]
BASE_REPLIES = [
    json_pairs(BASE[0]),
    json_pairs(BASE[1]),
    " ".join(map(str, BASE[2])),
    ", ".join(map(str, BASE[3])),
    json_pairs(BASE[4]),
    " ".join(["5"] * 14),
    " ".join(["11"] + ["5"] * 14),
    REFUSE,
]


def run_score(tmp_path, monkeypatch, server, answers, out, **kw):
    """A score_answers job whose one answer set (``s--base``) is ``answers``, run in a folder
    of its own; its scores file copied to ``out``."""
    config = scoring_config(server, tmp_path, **kw)
    spec = scoring_specs.score_answers(config, "local") | {"answer_tags": ["s--base"]}
    monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(config)))
    root = out.parent / f"{out.stem}_job"
    (root / grid.answer_path("s--base")).parent.mkdir(parents=True)
    shutil.copyfile(answers, root / grid.answer_path("s--base"))
    argv = ["--spec", specs.dumps(spec), "--test", str(tmp_path / "test.csv")]
    argv += ["--root", str(root), "--cost-report", str(tmp_path / "costs.csv")]
    assert score.main(argv) == 0
    shutil.copyfile(root / grid.score_path("local", "s--base"), out)
    return config


def bootstrap(values, n_boot, seed):
    """Independent percentile bootstrap of a mean (resampling with numpy's Generator)."""
    values = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))
    return tuple(np.quantile(values[draws].mean(axis=1), [0.025, 0.975]))


def test_subfactor_scores_invalid_refused_and_dimension_means(tmp_path, monkeypatch, capsys):
    test = dialogues(8)
    test.to_csv(tmp_path / "test.csv", index=False)
    write_answers(tmp_path / "base.jsonl", test, BASE_REPLIES)
    with OpenAIServer(answer_fn=planted_reply) as server:
        out = tmp_path / "scores.jsonl"
        config = run_score(tmp_path, monkeypatch, server, tmp_path / "base.jsonl", out)
        assert server.counts[CHAT] == 8
        sent = server.bodies[0]
        assert (sent["temperature"], sent["top_p"]) == (0, 0.1)  # the study's settings
        assert sent["messages"][0]["content"] == RAW["subfactors_1_to_10"]["system"]
        # the cached rerun asks the server nothing and writes the same file
        run_score(tmp_path, monkeypatch, server, tmp_path / "base.jsonl", tmp_path / "again.jsonl")
        assert server.counts[CHAT] == 8
    records = read_jsonl(out)
    assert records == read_jsonl(tmp_path / "again.jsonl")
    assert [r["scores"] for r in records] == [*BASE, None, None, None]
    assert [r["valid"] for r in records] == [True] * 5 + [False] * 3
    assert records[5]["problem"] == "14 scores, expected 15"
    assert records[6]["problem"] == "score 11 outside 1-10"
    assert records[7]["refusal"] is not None and records[7]["problem"] is None
    assert "8 answers scored, 2 invalid replies, 1 refused" in capsys.readouterr().out
    costs = pd.read_csv(tmp_path / "costs.csv")
    assert costs[costs["requests"].notna()]["cached"].tolist() == [0, 8]

    # the table: this set as the base student's answers, and a second set (the teacher's)
    monkeypatch.chdir(tmp_path)
    spec = scoring_specs.empathy_scores(config) | {"answer_tags": ["s--base", grid.TEACHER_TAG]}
    teacher = [[3] * 15, [10] * 15]
    for tag, rows in (("s--base", records), (grid.TEACHER_TAG, None)):
        path = tmp_path / grid.score_path("local", tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        if rows is None:
            rows = [
                {**records[0], "dialog_id": f"t{i}", "scores": s} for i, s in enumerate(teacher)
            ]
        write_jsonl(path, rows)
    assert table.main(["--spec", specs.dumps(spec), "--out", "empathy.csv"]) == 0
    result = pd.read_csv("empathy.csv", keep_default_na=False)
    base = result[result["answer_set"] == "s--base"].set_index("measure")
    # dimension of one answer = mean of its 5 subfactors, written out by hand
    by_hand = {
        "cognitive": [8, 6.8, 9, 6, 7],
        "affective": [6, 5, 9, 8, 3],
        "compassionate": [4, 3.2, 9, 2, 10],
    }
    for dimension, values in by_hand.items():
        row = base.loc[dimension]
        assert row["mean"] == pytest.approx(sum(values) / 5)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap(values, 500, 7))
        assert (row["n"], row["n_valid"], row["n_invalid"], row["n_refused"]) == (8, 5, 2, 1)
        assert (row["answer_kind"], row["student"], row["scorer_kind"]) == (
            "base",
            "s",
            "subfactors",
        )
    teacher_rows = result[result["answer_set"] == "teacher"]
    assert teacher_rows["mean"].tolist() == [6.5, 6.5, 6.5]
    assert teacher_rows["answer_kind"].tolist() == ["teacher"] * 3


def test_rating_scorer_means_and_counts(tmp_path, monkeypatch):
    test = dialogues(6)
    test.to_csv(tmp_path / "test.csv", index=False)
    write_answers(tmp_path / "a.jsonl", test, ["3", "Empathy Score: 2", "1", "3", "5", "2 or 3"])
    with OpenAIServer(answer_fn=planted_reply) as server:
        out = tmp_path / "scores.jsonl"
        run_score(tmp_path, monkeypatch, server, tmp_path / "a.jsonl", out, kind="rating")
        assert server.bodies[0]["messages"][0]["content"] == RAW["rating_1_to_3"]["system"]
    records = read_jsonl(out)
    assert [r["scores"] for r in records] == [[3], [2], [1], [3], None, None]
    [row] = table.summarize_scores(records, "rating", 300, 1)
    assert row["mean"] == pytest.approx(9 / 4)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap([3, 2, 1, 3], 300, 1))
    assert (row["n_valid"], row["n_invalid"], row["n_refused"]) == (4, 2, 0)


# --- config -------------------------------------------------------------------------------------
def test_the_default_grid_scores_with_two_scorers_and_bad_entries_are_named():
    from empathy_distill.core.config import load_config

    config = load_config(REPO_ROOT / "config.yaml")
    # scoring.grid of config.yaml (issue 22.6): the offline scorer and gpt-4o-mini's subfactors
    assert grid.scorers(config) == ["minilm_subfactors", "gpt4o_mini_subfactors"]
    assert scoring_specs.empathy_scores(config)["answer_tags"] == grid.answer_tags(config)
    assert len(grid.answer_tags(config)) == 129  # docs/running.md: a scores file each
    scorer = {"kind": "rating", "variant": "v2", "backend": "openai", "model": "gpt-4o-mini"}
    with pytest.raises(ConfigError) as error:
        validate_config(
            {
                "students": {"s": {"model": "m", "template": "t"}},
                "scoring": {"scorers": {"r": scorer}, "grid": ["nope"]},
            }
        )
    assert "config['scoring']['grid']: 'nope' is not defined" in str(error.value)
    assert "config['scoring']['scorers']['r']['variant']: 'v2' is not a rating prompt" in str(
        error.value
    )


# --- cost ---------------------------------------------------------------------------------------
def tokens(*texts):
    """The documented rule, restated: ceil(chars/4) + 3 per message + 3."""
    return sum(math.ceil(len(t) / 4) + 3 for t in texts) + 3


def test_projection_counts_every_answer_set_of_every_scorer(tmp_path, test_split):
    config = validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "distillation": {"methods": {"direct": ["chatgpt"]}},
            "grid": {"students": ["s"], "judges": []},
            "generation": {"max_new_tokens": 10},
            "evaluation": {"comparisons": ["vs_base"]},
            "scoring": {
                "grid": ["sub"],
                "scorers": {
                    "sub": {
                        "kind": "subfactors",
                        "backend": "openai",
                        "model": "gpt-4o-mini",
                        "mode": "batch",
                    }
                },
            },
        }
    )
    test2 = test_split.head(2)
    rows = [
        r
        for r in cost.project(config, test2, test2)
        if r.stage == "scorer:sub" and not r.part.startswith("responses_")  # own test
    ]
    part = RAW["subfactors_1_to_10"]
    answer = "x" * 40
    per_set = sum(
        tokens(
            part["system"],
            f"{part['instructions_v2']}\nSituation: {r.situation}\nSpeaker Utterance:"
            f" {r.speaker_uttr}\nResponse: {answer}\nScore:",
        )
        for r in test2.itertuples()
    )
    # each reply at its worst case: the scorer's output cap (max_new_tokens, schema default 256;
    # gpt-4o-mini does not think), not the ~75 tokens the 15 pairs usually take
    assert math.ceil(len(json_pairs([10] * 15)) / 4) < 256
    reply = 256
    price = PriceTable.load(PRICES).price("openai", "gpt-4o-mini", "batch")
    # answer sets: s--base, and s's SFT and DPO models on direct/chatgpt
    expected = {"base": (2, per_set), "model": (4, 2 * per_set)}
    assert {r.part: (r.requests, r.input_tokens) for r in rows} == expected
    for r in rows:
        assert r.output_tokens == reply * r.requests
        assert r.cost_usd == pytest.approx(price.cost(r.input_tokens, r.output_tokens))


# --- the DAG ------------------------------------------------------------------------------------
def test_dry_run_plans_one_score_job_per_scorer_and_the_table(dataset_path, tmp_path):
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        # SFT and DPO only (config.yaml adds PRIDE): the answer sets counted below
        "grid": {"students": ["tiny"], "judges": ["offline"], "methods": ["sft", "dpo"]},
        "evaluation": {"comparisons": ["vs_base", "dpo_vs_sft"]},
        "scoring": {
            "prompts": str(SHIPPED),  # the run's directory is not the repository
            "scorers": {
                "local": {
                    "kind": "subfactors",
                    "backend": "openai_compatible",
                    "model": "m",
                    "base_url": "http://127.0.0.1:9/v1",
                }
            },
            "grid": ["local"],
        },
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # one job for the scorer, writing every answer set's file
    [block] = [b for b in output.split("\nrule ") if b.startswith("score_answers:")]
    planned = set(block.split("output: ", 1)[1].splitlines()[0].strip().split(", "))
    expected = {
        "results/scores/local/tiny/base.jsonl",
        "results/scores/local/tiny/direct/chatgpt/sft.jsonl",
        "results/scores/local/tiny/direct/chatgpt/dpo.jsonl",
    }
    assert planned == expected
    assert output.count("\nrule empathy_scores:") == 1
