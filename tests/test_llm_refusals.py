"""Safety blocks (refusals) are final answers: cached, never bought again, handled downstream.

A backend returns a provider's block as ``Answer(text="", refusal=reason)`` (the LLM layer's
contract, ``llm/request.py``). These tests plant refusals with a small in-test backend (the
providers' own parsing is tested with the backends) and follow them through the cache, the
client, the teacher and judge commands, and the set builder.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core import grid
from empathy_distill.core.runtime import RUNTIME_ENV
from empathy_distill.distillation import build_sets, teacher, teacher_cli
from empathy_distill.distillation.sets import SOURCE_COLUMNS
from empathy_distill.evaluation import judge
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.tables import summarize
from empathy_distill.llm import ChatRequest, LLMClient, Message
from empathy_distill.llm import client as client_module
from empathy_distill.llm.backends.base import Backend
from empathy_distill.llm.cache import CACHE_FILE, ResponseCache
from empathy_distill.llm.endpoint import normalize_endpoint
from empathy_distill.llm.pricing import Price
from empathy_distill.llm.request import Answer
from tests.servers.base import approx_tokens, default_answer
from tests.test_eval_judge import BASE_TAG, MODEL_TAG, judge_job, one_pair
from tests.test_teacher import teacher_job

REPO = Path(__file__).resolve().parents[1]
REASON = "SAFETY: blocked by the provider's content filter"
MARKER = "PLANTED-REFUSAL"


class RefusingBackend(Backend):
    """Answers like the fake servers (``default_answer``); refuses any request whose messages
    contain ``MARKER``, billing its input tokens as providers do for a blocked prompt."""

    name = "openai"

    def __init__(self, answer_fn=default_answer) -> None:
        self.answer_fn = answer_fn
        self.calls: Counter[str] = Counter()

    async def agenerate(self, request: ChatRequest) -> Answer:
        self.calls[request.key] += 1
        messages = [m.as_dict() for m in request.messages]
        usage = {"input_tokens": sum(approx_tokens(m["content"]) for m in messages)}
        if any(MARKER in m["content"] for m in messages):
            return Answer("", request.model, {**usage, "output_tokens": 0}, refusal=REASON)
        text = self.answer_fn(messages)
        return Answer(text, request.model, {**usage, "output_tokens": approx_tokens(text)})


PRICE = Price(2.5, 10.0)


def make(tmp_path: Path, backend: Backend, price: Price = PRICE) -> LLMClient:
    endpoint = normalize_endpoint({"backend": "openai", "model": "gpt-4o", "max_retries": 2})
    return LLMClient(
        endpoint,
        ResponseCache(tmp_path / "cache"),
        price,
        cost_report=tmp_path / "costs.csv",
        show_progress=False,
        backend=backend,
    )


def ask(text: str) -> ChatRequest:
    return ChatRequest("gpt-4o", (Message("user", text),))


# Cache ------------------------------------------------------------------------------------------
OLD_SCHEMA = """
CREATE TABLE responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, usage TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0, backend TEXT NOT NULL, mode TEXT NOT NULL, source TEXT,
    request TEXT NOT NULL, created_at REAL NOT NULL
);
"""


def test_a_cache_written_before_refusals_opens_and_keeps_its_answers(tmp_path):
    """The schema of caches made before the refusal column, as that version created it."""
    (tmp_path / "cache").mkdir()
    with sqlite3.connect(tmp_path / "cache" / CACHE_FILE) as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO responses VALUES ('k1','gpt-4o','old answer','{\"input_tokens\":3,"
            "\"output_tokens\":4}',0.25,'openai','realtime','realtime','{}',1.0)"
        )
    cache = ResponseCache(tmp_path / "cache")
    old = cache.get_many(["k1"])["k1"]
    assert (old.text, old.usage, old.cost_usd, old.refusal) == (
        "old answer",
        {"input_tokens": 3, "output_tokens": 4},
        0.25,
        None,
    )
    request = ask(f"{MARKER} new")
    cache.put(
        request,
        Answer("", "gpt-4o", {"input_tokens": 5, "output_tokens": 0}, refusal=REASON),
        cost_usd=0.1,
        backend="openai",
        mode="realtime",
    )
    cache.close()
    again = ResponseCache(tmp_path / "cache")  # a second open (migration already done)
    found = again.get_many(["k1", request.key])
    assert found["k1"].text == "old answer" and found[request.key].refusal == REASON
    assert again.spent_usd() == pytest.approx(0.35)


# Client -----------------------------------------------------------------------------------------
def test_a_refusal_is_returned_cached_and_never_bought_again(tmp_path):
    backend = RefusingBackend()
    requests = [ask("hello"), ask(f"{MARKER} please"), ask("bye")]
    out = make(tmp_path, backend).complete(requests, desc="r")
    assert [r.refusal for r in out] == [None, REASON, None]
    assert out[1].text == "" and out[0].text == default_answer([requests[0].messages[0].as_dict()])
    assert sum(backend.calls.values()) == 3

    rerun_backend = RefusingBackend()
    again = make(tmp_path, rerun_backend).complete(requests, desc="r")  # a rerun of the job
    assert sum(rerun_backend.calls.values()) == 0  # nothing sent, nothing paid
    assert [r.refusal for r in again] == [None, REASON, None] and all(r.cached for r in again)
    # what the rerun logged as spent: nothing; the refusal's billed input was logged once
    with sqlite3.connect(tmp_path / "cache" / CACHE_FILE) as db:
        cache_total = db.execute("SELECT SUM(cost_usd) FROM responses").fetchone()[0]
    costs = pd.read_csv(tmp_path / "costs.csv")
    assert costs["cost_usd"].sum() == pytest.approx(cache_total, abs=1e-5)
    blocked_tokens = approx_tokens(f"{MARKER} please")
    assert cache_total == pytest.approx(
        2.5e-6 * sum(approx_tokens(t) for t in ("hello", f"{MARKER} please", "bye"))
        + 10e-6 * sum(approx_tokens(r.text) for r in out)
    )
    assert blocked_tokens > 0


# Judge ------------------------------------------------------------------------------------------
def test_judge_command_records_a_refusal_as_an_invalid_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    backend = RefusingBackend(lambda messages: "1")  # always Response 1: a tie over both orders
    monkeypatch.setattr(client_module, "make_backend", lambda endpoint: backend)
    ids = ["d0", "d1", "d2", "d3"]
    pd.DataFrame(
        {"dialog_id": ids, "situation": [f"situation {d}" for d in ids], "speaker_uttr": "hi"}
    ).to_csv(tmp_path / "test.csv", index=False)
    # d2's model answer trips the provider's filter in both orders
    model = {d: (f"{MARKER} answer" if d == "d2" else f"model answer {d}") for d in ids}
    sides = ((MODEL_TAG, model), (BASE_TAG, {d: f"other {d}" for d in ids}))
    for tag, side in sides:  # where the judge job reads them (grid.answer_path)
        write_jsonl(
            tmp_path / grid.answer_path(tag),
            [{"dialog_id": d, "answer": a, "generation": {}, "seed": 0} for d, a in side.items()],
        )
    endpoint = {"backend": "openai", "model": "gpt-4o", "max_retries": 1}
    config = {
        "judges": {"j": endpoint},
        "llm": {
            "cache_dir": str(tmp_path / "cache"),
            "price_table": str(REPO / "resources/prices.yaml"),
        },
        "evaluation": {"paper_faithful": False},
    }
    spec, run = judge_job(config, "j")
    monkeypatch.setenv(RUNTIME_ENV, json.dumps(run))
    argv = ["--spec", json.dumps(one_pair(spec)), "--test", str(tmp_path / "test.csv")]
    argv += ["--root", str(tmp_path), "--cost-report", str(tmp_path / "costs.csv")]
    assert judge.main(argv) == 0
    records = read_jsonl(tmp_path / grid.judgment_path("j", MODEL_TAG, BASE_TAG))
    refused = [r for r in records if r["refusal"] is not None]
    assert sorted((r["dialog_id"], r["order"]) for r in refused) == [
        ("d2", judge.MODEL_FIRST),
        ("d2", judge.OPPONENT_FIRST),
    ]
    assert all(r["verdict"] is None and r["winner"] is None for r in refused)
    assert all(r["refusal"] == REASON for r in refused)
    assert "1 pairs, 8 judgments, 2 invalid (2 refused by the provider)" in (
        capsys.readouterr().out
    )
    stats = summarize(records, model, {d: f"other {d}" for d in ids})
    # the refused dialogue is counted as invalid, the three others are ties
    assert (stats["n"], stats["invalid"], stats["ties"], stats["wins"]) == (4, 1, 3, 0)
    calls = sum(backend.calls.values())
    assert judge.main(argv) == 0  # rerun: the refusals come from the cache
    assert sum(backend.calls.values()) == calls == 8


# Teacher and sets -------------------------------------------------------------------------------
def sources_table() -> pd.DataFrame:
    """Six improve_human sources; s1 (sft) and s4 (dpo) carry text the provider refuses."""
    rows = []
    for i, role in enumerate(["sft", "sft", "sft", "dpo", "dpo", "dpo"]):
        bad = i in (1, 4)
        rows.append(
            {
                "dialog_id": f"s{i}",
                "role": role,
                "situation": f"{MARKER} situation {i}" if bad else f"situation {i}",
                "speaker_uttr": f"utterance {i}",
                "source_response": f"response {i}",
                "human_response": f"response {i}",
            }
        )
    return pd.DataFrame(rows)[SOURCE_COLUMNS]


@pytest.fixture
def teacher_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    backend = RefusingBackend()
    monkeypatch.setattr(client_module, "make_backend", lambda endpoint: backend)
    sources_table().to_csv(tmp_path / "sources.csv", index=False)
    endpoint = {"backend": "openai", "model": "gpt-4o", "max_retries": 1}

    def run(strategy: str) -> Path:
        out = tmp_path / f"{strategy}.jsonl"
        argv = ["improve", *teacher_job(endpoint, tmp_path / "cache", monkeypatch)]
        argv += ["--cost-report", str(tmp_path / "costs.csv")]
        argv += ["--method", "improve_human", "--strategy", strategy]
        argv += ["--sources", str(tmp_path / "sources.csv"), "--out", str(out)]
        assert teacher_cli.main(argv) == 0  # refusals never crash the job
        return out

    return tmp_path, backend, run


def test_teacher_records_refusals_and_the_sets_leave_them_out(teacher_run, caplog):
    tmp, _backend, run = teacher_run
    with caplog.at_level("WARNING"):
        out = run("improve_cognitive")
    records = read_jsonl(out)
    refused = {r["dialog_id"]: r["refusal"] for r in records if r["refusal"] is not None}
    assert refused == {"s1": REASON, "s4": REASON}
    assert all(r["improved_response"] == "" for r in records if r["dialog_id"] in refused)
    summary = json.loads(teacher.summary_path(out).read_text())
    assert summary == {"items": 6, "refused": 2, "refused_dialog_ids": ["s1", "s4"]}
    assert "2 of 6 item(s) refused by the provider" in caplog.text

    caplog.clear()
    test_split = tmp / "test.csv"  # a test split none of the sources is in
    test_split.write_text("dialog_id\nheld-out-1\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert (
            build_sets.main(
                [
                    "improved",
                    "--sources",
                    str(tmp / "sources.csv"),
                    "--teacher",
                    str(out),
                    "--prompts",
                    str(REPO / "resources/prompts.json"),
                    "--sft",
                    str(tmp / "sft.json"),
                    "--dpo",
                    str(tmp / "dpo.json"),
                    "--test",
                    str(test_split),
                    "--info",
                    str(tmp / "dataset_info.json"),
                    "--leakage-ok",
                    str(tmp / "leakage_check.ok"),
                ]
            )
            == 0
        )
    assert "2 of 6 source dialogue(s) refused" in caplog.text
    sft = json.loads((tmp / "sft.json").read_text())
    dpo = json.loads((tmp / "dpo.json").read_text())
    # 3 sft sources - 1 refused = 2 dialogues x 2 examples; 3 dpo sources - 1 refused = 2 pairs
    assert len(sft) == 4 and len(dpo) == 2
    texts = json.dumps([sft, dpo])
    assert MARKER not in texts


def test_sequential_chain_stops_at_a_refused_turn(teacher_run):
    _tmp, backend, run = teacher_run
    out = run("improve_three_dimensions_sequentially")
    records = {r["dialog_id"]: r for r in read_jsonl(out)}
    # the refused items were refused at turn 1: one call each, no later turn was asked
    for d in ("s1", "s4"):
        assert records[d]["refusal"] == REASON and len(records[d]["turns"]) == 1
    for d in ("s0", "s2", "s3", "s5"):
        assert records[d]["refusal"] is None and len(records[d]["turns"]) == 3
    assert sum(backend.calls.values()) == 2 * 1 + 4 * 3
