"""Teacher stage against the local OpenAI server: prompts byte-identical to the reference."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core import runtime, strategies
from empathy_distill.core.readers import read_jsonl
from empathy_distill.distillation import specs as distillation_specs
from empathy_distill.distillation import teacher, teacher_cli
from empathy_distill.distillation.sets import SOURCE_COLUMNS, improve_human_sources
from tests.conftest import REPO_ROOT, SHIPPED_PROMPTS
from tests.servers.base import conversation_id, default_answer
from tests.servers.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-teacher-SECRET-42"


def reference():
    """The paper's prompt texts (the shipped copy: test_reference_texts checks it against the
    reference wherever that is present)."""
    return json.loads(SHIPPED_PROMPTS.read_text(encoding="utf-8"))


def filled(template, **values):
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def teacher_job(endpoint: dict, cache_dir, monkeypatch) -> list[str]:
    """``--spec`` and ``--prompts`` of a teacher job as teacher.smk passes them, with the
    endpoint's operational keys exported as the runtime part (``$EMPATHY_DISTILL_RUNTIME``)."""
    spec_endpoint = {
        k: v for k, v in endpoint.items() if k not in runtime.OPERATIONAL_ENDPOINT_KEYS
    }
    operational = {k: v for k, v in endpoint.items() if k in runtime.OPERATIONAL_ENDPOINT_KEYS}
    spec = {
        "endpoint": spec_endpoint,
        "cache_dir": str(cache_dir),
        "price_table": str(REPO / "resources/prices.yaml"),
    }
    monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps({"teacher": operational}))
    return ["--spec", json.dumps(spec), "--prompts", str(REPO / "resources/prompts.json")]


class Recorder:
    """answer_fn that remembers every conversation the server was asked."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen: list[list[dict[str, str]]] = []

    def __call__(self, messages):
        with self.lock:
            self.seen.append(messages)
        return default_answer(messages)


@pytest.fixture
def setup(tmp_path, train, test_split, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    small_train = train.head(6)
    small_test = test_split.head(3)
    small_train.to_csv(tmp_path / "train.csv", index=False)
    small_test.to_csv(tmp_path / "test.csv", index=False)
    improve_human_sources(small_train).to_csv(tmp_path / "improve_human.csv", index=False)
    recorder = Recorder()
    with OpenAIServer(answer_fn=recorder) as server:
        endpoint = {
            "backend": "openai",
            "model": "gpt-4o",
            "base_url": server.url,
            "mode": "realtime",
            "max_retries": 2,
        }
        common = [
            *teacher_job(endpoint, tmp_path / "cache", monkeypatch),
            "--prompts",  # the paper's prompts (argparse keeps the last --prompts)
            str(SHIPPED_PROMPTS),
            "--cost-report",
            str(tmp_path / "costs/teacher.csv"),
        ]
        yield tmp_path, server, recorder, common, small_train, small_test


def test_initial_answers_and_llm_sources(setup):
    tmp, _server, recorder, common, train, test = setup
    ref = reference()
    assert (
        teacher_cli.main(
            [
                "initial",
                *common,
                "--train",
                str(tmp / "train.csv"),
                "--test",
                str(tmp / "test.csv"),
                "--out",
                str(tmp / "initial.jsonl"),
                "--answers",
                str(tmp / "answers.jsonl"),
            ]
        )
        == 0
    )
    initial = read_jsonl(tmp / "initial.jsonl")
    assert [r["dialog_id"] for r in initial] == [*train["dialog_id"], *test["dialog_id"]]
    for record, (_, row) in zip(initial, pd.concat([train, test]).iterrows(), strict=True):
        expected = filled(
            ref["teacher"]["initial_response"]["user"],
            context=row["situation"],
            speaker_utterance=row["speaker_uttr"],
        )
        assert record["prompt"] == expected
        assert record["response"] == default_answer([{"role": "user", "content": expected}])
    assert sorted(m[0]["content"] for m in recorder.seen) == sorted(r["prompt"] for r in initial)
    answers = read_jsonl(tmp / "answers.jsonl")
    assert [a["dialog_id"] for a in answers] == list(test["dialog_id"])
    assert set(answers[0]) == {"dialog_id", "prompt", "answer", "generation", "seed"}
    assert answers[0]["generation"]["model"] == "gpt-4o"

    assert (
        teacher_cli.main(
            [
                "llm-sources",
                "--spec",
                json.dumps({"n": 950, "seed": 42}),
                "--train",
                str(tmp / "train.csv"),
                "--initial",
                str(tmp / "initial.jsonl"),
                "--out",
                str(tmp / "llm.csv"),
            ]
        )
        == 0
    )
    sources = pd.read_csv(tmp / "llm.csv", dtype=str, keep_default_na=False)
    assert list(sources.columns) == SOURCE_COLUMNS
    by_id = {r["dialog_id"]: r["response"] for r in initial}
    assert list(sources["source_response"]) == [by_id[d] for d in train["dialog_id"]]
    assert list(sources["human_response"]) == list(train["response_human"])
    assert set(sources["role"]) == {"sft", "dpo"}
    # secrets: nothing written by the stage contains the key
    for path in tmp.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_llm_sources_names_a_missing_initial_file(tmp_path, capsys):
    """A missing input is one ``error:`` line naming the file, not a traceback."""
    pd.DataFrame(
        {"dialog_id": ["d1"], "situation": ["s"], "speaker_uttr": ["u"], "response_human": ["h"]}
    ).to_csv(tmp_path / "train.csv", index=False)
    missing = tmp_path / "initial.jsonl"
    argv = ["llm-sources", "--spec", json.dumps({"n": 950, "seed": 42})]
    argv += ["--train", str(tmp_path / "train.csv"), "--initial", str(missing)]
    assert teacher_cli.main([*argv, "--out", str(tmp_path / "llm.csv")]) == 1
    assert capsys.readouterr().err.strip() == f"error: file not found: {missing}"
    assert not (tmp_path / "llm.csv").exists()


def test_improve_llm_split_is_the_paper_sample(paper_train):
    train = paper_train
    initial = {d: f"draft {d}" for d in train["dialog_id"]}
    sources = teacher.improve_llm_sources(train, initial, n=950, seed=42)
    assert (sources["role"] == "sft").sum() == 950 and (sources["role"] == "dpo").sum() == 800
    expected_sft = set(train.reset_index(drop=True).sample(n=950, random_state=42)["dialog_id"])
    assert set(sources.loc[sources["role"] == "sft", "dialog_id"]) == expected_sft
    assert list(sources["dialog_id"]) == list(train["dialog_id"])  # dataset order kept


def test_every_strategy_sends_byte_identical_prompts(setup):
    tmp, _server, recorder, common, _train, _ = setup
    ref = reference()
    sources = pd.read_csv(tmp / "improve_human.csv", dtype=str, keep_default_na=False)
    for strategy in strategies.names(strategies.SINGLE_TURN):
        recorder.seen.clear()
        out = tmp / f"{strategy}.jsonl"
        assert (
            teacher_cli.main(
                [
                    "improve",
                    *common,
                    "--method",
                    "improve_human",
                    "--strategy",
                    strategy,
                    "--sources",
                    str(tmp / "improve_human.csv"),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        expected = [
            filled(
                ref["teacher"]["improve"][strategy],
                context=r["situation"],
                speaker_utterance=r["speaker_uttr"],
                response=r["source_response"],
            )
            for _, r in sources.iterrows()
        ]
        assert sorted(m[0]["content"] for m in recorder.seen) == sorted(expected)
        assert all(len(m) == 1 and m[0]["role"] == "user" for m in recorder.seen)
        rows = read_jsonl(out)
        assert [r["dialog_id"] for r in rows] == list(sources["dialog_id"])
        assert [r["role"] for r in rows] == list(sources["role"])
        for row, text in zip(rows, expected, strict=True):
            assert row["strategy"] == strategy
            assert row["improved_response"] == default_answer([{"role": "user", "content": text}])
            assert set(row) >= {"source_response", "request_key", "model", "usage"}


def test_sequential_chain_turns_and_first_turn_cache_hit(setup):
    tmp, server, recorder, common, _train, _ = setup
    ref = reference()
    args = ["--method", "improve_human", "--sources", str(tmp / "improve_human.csv")]
    assert (
        teacher_cli.main(
            [
                "improve",
                *common,
                *args,
                "--strategy",
                "improve_cognitive",
                "--out",
                str(tmp / "cog.jsonl"),
            ]
        )
        == 0
    )
    recorder.seen.clear()
    assert (
        teacher_cli.main(
            [
                "improve",
                *common,
                *args,
                "--strategy",
                "improve_three_dimensions_sequentially",
                "--out",
                str(tmp / "seq.jsonl"),
            ]
        )
        == 0
    )
    sources = pd.read_csv(tmp / "improve_human.csv", dtype=str, keep_default_na=False)
    seq = ref["teacher"]["improve_three_dimensions_sequentially"]
    rows = read_jsonl(tmp / "seq.jsonl")
    for row, (_, src) in zip(rows, sources.iterrows(), strict=True):
        u1 = filled(
            ref["teacher"]["improve"]["improve_cognitive"],
            context=src["situation"],
            speaker_utterance=src["speaker_uttr"],
            response=src["source_response"],
        )
        turn1 = [{"role": "user", "content": u1}]
        a1 = default_answer(turn1)
        turn2 = [
            *turn1,
            {"role": "assistant", "content": a1},
            {"role": "user", "content": seq["turn2_user"]},
        ]
        a2 = default_answer(turn2)
        turn3 = [
            *turn2,
            {"role": "assistant", "content": a2},
            {"role": "user", "content": seq["turn3_user"]},
        ]
        assert turn2 in recorder.seen and turn3 in recorder.seen
        assert turn1 not in recorder.seen  # first turn: cache hit after improve_cognitive
        assert server.received[conversation_id(turn1)] == 1
        assert row["improved_response"] == default_answer(turn3)
        assert [t["response"] for t in row["turns"]] == [a1, a2, default_answer(turn3)]
    assert len(recorder.seen) == 2 * len(sources)


@pytest.mark.parametrize("strategy", ["combined_single_dimensions", "no_such_strategy"])
def test_combined_or_unknown_strategy_makes_no_calls(setup, strategy):
    """A pooled strategy has no calls of its own; an unregistered one is a clear error (code 1)."""
    tmp, server, _recorder, common, *_ = setup
    code = teacher_cli.main(
        [
            "improve",
            *common,
            "--method",
            "improve_human",
            "--strategy",
            strategy,
            "--sources",
            str(tmp / "improve_human.csv"),
            "--out",
            str(tmp / "x.jsonl"),
        ]
    )
    assert code == 1 and server.counts["POST /v1/chat/completions"] == 0


def test_teacher_client_takes_its_operational_keys_from_the_runtime_part(monkeypatch):
    """The spec holds what shapes the answers; concurrency and the budget come with the runtime
    part, so tuning them changes no rule's params (nothing reruns) yet reaches the client."""
    import yaml

    from empathy_distill.core.config import validate_config

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    config = validate_config(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))
    tuned = validate_config(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))
    tuned["teacher"].update(concurrency=3, requests_per_minute=7)
    tuned["llm"]["budget_usd"] = 12.5
    assert distillation_specs.teacher(tuned) == distillation_specs.teacher(
        config
    )  # the rule's param is unchanged
    run = runtime.runtime_part(tuned)
    assert "concurrency" not in json.dumps(distillation_specs.teacher(tuned))
    client = teacher.make_teacher_client(distillation_specs.teacher(tuned), run, None)
    assert client.endpoint["concurrency"] == 3 and client.endpoint["requests_per_minute"] == 7
    assert client.budget_usd == 12.5 and client.model == config["teacher"]["model"]
