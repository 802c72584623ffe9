"""The LLM layer against local HTTP servers: the real openai / google-genai clients, no network."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from pathlib import Path

import pytest

from empathy_distill.llm import (
    BudgetExceededError,
    ChatRequest,
    LLMError,
    Message,
    make_client,
)
from empathy_distill.llm.backends.openai_backend import OpenAIBackend
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.pricing import PriceTable, approx_request_tokens
from empathy_distill.llm.retry import parse_retry_after
from tests.servers.base import conversation_id, default_answer
from tests.servers.gemini_server import GeminiServer
from tests.servers.openai_server import Fault, OpenAIServer

SECRET = "sk-test-DO-NOT-LEAK-0123456789"
PRICES = Path(__file__).resolve().parents[1] / "resources" / "prices.yaml"


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)


def endpoint(server, **extra):
    return {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": server.url,
        "poll_interval_s": 0.01,
        "max_retries": 3,
        **extra,
    }


def client_for(server, tmp_path, **extra):
    return make_client(
        endpoint(server, **extra),
        cache_dir=tmp_path / "cache",
        price_table=PRICES,
        cost_report=tmp_path / "costs.csv",
        show_progress=False,
    )


def requests(n, prefix="q", model="gpt-4o"):
    return [
        ChatRequest(model, (Message("system", "be kind"), Message("user", f"{prefix} {i}")))
        for i in range(n)
    ]


def as_messages(request):
    return [m.as_dict() for m in request.messages]


def test_request_key_is_content_hash():
    a = ChatRequest("gpt-4o", (Message("user", "hi"),), {"temperature": 0})
    b = ChatRequest("gpt-4o", [Message("user", "hi")], {"temperature": 0})
    assert a.key == b.key and len(a.key) == 64 and hash(a) == hash(b)
    assert a.key != ChatRequest("gpt-4o", (Message("user", "hi"),), {"temperature": 1}).key
    assert a.key != ChatRequest("gpt-4o-mini", (Message("user", "hi"),), {"temperature": 0}).key
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.model = "x"
    with pytest.raises(ValueError):
        ChatRequest("gpt-4o", (Message("user", "hi"), Message("assistant", "yo")))


def test_realtime_order_duplicates_and_cross_call_cache(server, tmp_path):
    reqs = requests(12)
    batch = [*reqs, reqs[0], reqs[5]]
    out = client_for(server, tmp_path).complete(batch, desc="t")
    assert [r.key for r in out] == [r.key for r in batch]
    assert [r.text for r in out] == [default_answer(as_messages(r)) for r in batch]
    assert server.counts["POST /v1/chat/completions"] == 12  # duplicates answered once
    assert not any(r.cached for r in out)
    again = client_for(server, tmp_path).complete(reqs[:3])  # a new client = a new process
    assert all(r.cached for r in again)
    assert server.counts["POST /v1/chat/completions"] == 12
    with open(tmp_path / "costs.csv") as handle:
        rows = list(csv.DictReader(handle))
    # spend rows (written as answers are committed) carry no request counts; one summary row
    # per call carries them and no spend
    spend = [r for r in rows if r["requests"] == ""]
    calls = [r for r in rows if r["requests"] != ""]
    assert sum(int(r["answered"]) for r in spend) == 12
    assert [(r["requests"], r["unique"], r["cached"]) for r in calls] == [
        ("14", "12", "0"),
        ("3", "3", "3"),
    ]
    assert all(int(r["answered"]) == 0 and float(r["cost_usd"]) == 0 for r in calls)
    usage = sum(r.usage["input_tokens"] for r in out[:12])
    assert sum(int(r["input_tokens"]) for r in spend) == usage
    price = PriceTable.load(PRICES).price("openai", "gpt-4o", "realtime")
    expected = price.cost(usage, sum(r.usage["output_tokens"] for r in out[:12]))
    assert sum(float(r["cost_usd"]) for r in spend) == pytest.approx(expected, abs=1e-5)


def test_retry_after_is_honoured(server, tmp_path):
    server.faults.append(Fault(429, retry_after=1))
    out = client_for(server, tmp_path).complete(requests(1))
    assert out[0].text.startswith("reply-")
    times = [t for t, path in server.request_times if path == "/v1/chat/completions"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None


def test_malformed_and_server_errors_are_retried(server, tmp_path):
    server.faults.extend([Fault(malformed=True), Fault(500), Fault(503), Fault(408)])
    out = client_for(server, tmp_path).complete(requests(2))
    assert len(out) == 2 and server.counts["POST /v1/chat/completions"] == 6


def test_answer_that_never_arrives_names_the_request(server, tmp_path):
    server.faults.extend([Fault(500)] * 10)
    reqs = requests(1, prefix="unlucky")
    with pytest.raises(LLMError) as info:
        client_for(server, tmp_path, max_retries=2).complete(reqs, desc="teacher x")
    message = str(info.value)
    assert reqs[0].key[:12] in message and "unlucky 0" in message and "HTTP 500" in message
    assert server.counts["POST /v1/chat/completions"] == 3  # 1 try + 2 retries


def test_client_error_is_not_retried(server, tmp_path):
    server.faults.append(Fault(400))
    with pytest.raises(LLMError, match="HTTP 400"):
        client_for(server, tmp_path).complete(requests(1))
    assert server.counts["POST /v1/chat/completions"] == 1


def test_batch_joins_by_custom_id_and_retries_lost_and_failed_items_alone(server, tmp_path):
    reqs = requests(10, prefix="b")
    server.batch_drop_lines = 1
    server.batch_error_items = 1
    server.batch_malformed_lines = 1
    out = client_for(server, tmp_path, mode="batch").complete(reqs)
    # the server writes output lines in reverse order: joined by custom_id, answers still match
    assert [r.text for r in out] == [default_answer(as_messages(r)) for r in reqs]
    assert server.counts["POST /v1/batches"] == 2
    second = list(server.batches.values())[1]
    assert second["request_counts"]["total"] == 2  # only the lost and the failed item
    assert server.counts["POST /v1/chat/completions"] == 0
    assert all(n == 1 for n in server.answered.values()) and len(server.answered) == 10


def test_expired_batch_resubmits_only_unfinished(server, tmp_path):
    server.batch_outcomes.append("expired")
    out = client_for(server, tmp_path, mode="batch").complete(requests(8))
    assert len(out) == 8
    totals = [b["request_counts"]["total"] for b in server.batches.values()]
    assert totals == [8, 4]
    assert all(n == 1 for n in server.answered.values()) and len(server.answered) == 8


def test_failed_batches_exhaust_retries_with_named_error(server, tmp_path):
    # a transient failure other than the queue limit (which splits the batch instead:
    # tests/test_llm_openai_queue.py): the same requests go again, max_retries times
    server.batch_outcomes.extend(["failed:server_error"] * 3)
    reqs = requests(2)
    with pytest.raises(LLMError) as info:
        client_for(server, tmp_path, mode="batch", max_retries=2).complete(reqs)
    assert reqs[0].key[:12] in str(info.value) and "failed" in str(info.value)
    assert server.counts["POST /v1/batches"] == 3


def test_split_batches_under_limits(server, tmp_path):
    client = client_for(server, tmp_path, mode="batch")
    reqs = requests(7)
    backend = OpenAIBackend(SECRET, server.url)
    backend.max_batch_requests = 3
    client._backend = backend
    client.complete(reqs)
    assert [b["request_counts"]["total"] for b in server.batches.values()] == [3, 3, 1]


def test_resume_finds_a_batch_created_but_not_recorded(server, tmp_path):
    """Killed between batches.create and recording its id: the rerun finds it by its tag."""
    reqs = requests(4)
    cache = ResponseCache(tmp_path / "cache")
    cache.add_submission("ed-crashed", "openai", "gpt-4o", reqs)
    backend = OpenAIBackend(SECRET, server.url)
    asyncio.run(backend.submit_batch("ed-crashed", reqs))
    out = client_for(server, tmp_path, mode="batch").complete(reqs)
    assert len(out) == 4 and server.counts["POST /v1/batches"] == 1


def test_budget_cap_stops_before_spending(server, tmp_path):
    client = make_client(
        endpoint(server),
        cache_dir=tmp_path / "c",
        price_table=PRICES,
        budget_usd=0.001,
        show_progress=False,
    )
    reqs = requests(20)
    with pytest.raises(BudgetExceededError, match="budget"):
        client.complete(reqs)
    assert server.counts["POST /v1/chat/completions"] == 0
    # projection used: input tokens x input price + max_new_tokens x output price per request
    price = PriceTable.load(PRICES).price("openai", "gpt-4o", "realtime")
    projected = sum(price.cost(approx_request_tokens(r), 256) for r in reqs)
    assert projected > 0.001


def test_budget_counts_spend_recorded_by_earlier_runs(server, tmp_path):
    common = dict(cache_dir=tmp_path / "c", price_table=PRICES, show_progress=False)
    make_client(endpoint(server), **common).complete(requests(5))
    spent = ResponseCache(tmp_path / "c").spent_usd()
    assert spent > 0
    capped = make_client(endpoint(server), budget_usd=spent * 1.0001, **common)
    capped.complete(requests(5))  # all cached: free, allowed
    with pytest.raises(BudgetExceededError):
        capped.complete(requests(1, prefix="new"), expected_output_tokens=1)
    assert server.counts["POST /v1/chat/completions"] == 5


def test_unpriced_model_fails_before_spending(server, tmp_path):
    with pytest.raises(LLMError, match="no price"):
        make_client(endpoint(server, model="gpt-99"), cache_dir=tmp_path, price_table=PRICES)
    free = make_client(
        {"backend": "openai_compatible", "model": "my-local", "base_url": server.url},
        cache_dir=tmp_path,
        price_table=tmp_path / "absent.yaml",
        show_progress=False,
    )
    assert free.complete(requests(1, model="my-local"))[0].text.startswith("reply-")


def test_missing_key_is_named(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        client_for(server, tmp_path).complete(requests(1))


def test_secret_never_written(server, tmp_path):
    client_for(server, tmp_path).complete(requests(3))
    client_for(server, tmp_path, mode="batch").complete(requests(3, prefix="b"))
    assert any(SECRET in str(h.values()) for h in server.seen_headers)  # it was sent
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def test_gemini_realtime_and_batch(tmp_path):
    with GeminiServer() as srv:
        ep = {
            "backend": "gemini",
            "model": "gemini-3.5-flash",
            "base_url": srv.url,
            "poll_interval_s": 0.01,
            "max_retries": 3,
        }
        reqs = [
            ChatRequest(
                "gemini-3.5-flash",
                (Message("system", "sys"), Message("user", f"u{i}")),
                {"temperature": 0},
            )
            for i in range(4)
        ]
        srv.faults.extend([Fault(429, retry_after=0.1), Fault(malformed=True)])
        out = make_client(ep, cache_dir=tmp_path, price_table=PRICES, show_progress=False).complete(
            reqs
        )
        assert [r.text for r in out] == [default_answer(as_messages(r)) for r in reqs]
        sent = srv.requests_seen[-1]
        assert sent["systemInstruction"]["parts"][0]["text"] == "sys"
        assert all(c["role"] == "user" for c in sent["contents"])
        # the sampling, and the endpoint's output cap (max_new_tokens 256, no thinking budget)
        assert sent["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 256}
        breqs = [
            dataclasses.replace(r, messages=(*r.messages[:-1], Message("user", f"b{i}")))
            for i, r in enumerate(reqs)
        ]
        srv.batch_drop_items = 1
        bout = make_client(
            {**ep, "mode": "batch"}, cache_dir=tmp_path, price_table=PRICES, show_progress=False
        ).complete(breqs)
        assert [r.text for r in bout] == [default_answer(as_messages(r)) for r in breqs]
        assert len(srv.batches) == 2  # the dropped item was resubmitted alone
        assert all(srv.answered[conversation_id(as_messages(r))] == 1 for r in breqs)
