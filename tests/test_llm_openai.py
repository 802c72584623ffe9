"""OpenAI provider specifics through the real openai SDK against the fake API server: the SDK's
transport, reasoning-token usage, safety blocks, result-file parsing, batch error classes, lost
create replies, and what escapes ``complete()``."""

from __future__ import annotations

import asyncio
import csv
import math

import pytest

from empathy_distill.llm import ChatRequest, LLMError, Message, make_client
from empathy_distill.llm.backends.openai_backend import OpenAIBackend
from empathy_distill.llm.cache import ResponseCache
from tests.servers.base import conversation_id, default_answer
from tests.servers.openai_server import FILTER, REFUSAL_TEXT, REFUSE, TOO_LONG, OpenAIServer

SECRET = "sk-test-openai-0123456789"
#: A reasoning model priced for these tests only (USD per 1M tokens).
PRICES_YAML = """models:
  o3-mini:
    realtime: {input: 1.10, output: 4.40}
    batch: {input: 0.55, output: 2.20}
  gpt-4o:
    realtime: {input: 2.50, output: 10.00}
    batch: {input: 1.25, output: 5.00}
"""


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


@pytest.fixture
def prices(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES_YAML)
    return path


def client(server, tmp_path, prices, **extra):
    endpoint = {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": server.url,
        "poll_interval_s": 0.01,
        "max_retries": 3,
        **extra,
    }
    return make_client(
        endpoint,
        cache_dir=tmp_path / "cache",
        price_table=prices,
        cost_report=tmp_path / "costs.csv",
        show_progress=False,
    )


def ask(texts, model="gpt-4o", sampling=None):
    return [ChatRequest(model, (Message("user", t),), sampling or {}) for t in texts]


def messages(request):
    return [m.as_dict() for m in request.messages]


def report_rows(tmp_path):
    with open(tmp_path / "costs.csv") as handle:
        return list(csv.DictReader(handle))


def batch_requests_created(server):
    """Requests in every batch the server created: each is processed and billed by the API."""
    return sum(
        len([x for x in server.files[b["input_file_id"]].split(b"\n") if x])
        for b in server.batches.values()
    )


def test_realtime_uses_the_sdk_transport_response_class(server, tmp_path, prices):
    """openai 2.x (httpx) next to httpx2 (pulled by google-genai 3.x): the raw post must name
    the transport's response class, not whichever httpx happens to be importable."""
    pytest.importorskip("httpx2")
    reqs = ask(["hello", "there"])
    out = client(server, tmp_path, prices).complete(reqs)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in reqs]


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_reasoning_tokens_billed_once_and_fully(server, tmp_path, prices, mode):
    server.reasoning_tokens = 50
    reqs = ask([f"think {i}" for i in range(3)], "o3-mini", {"max_completion_tokens": 400})
    out = client(server, tmp_path, prices, model="o3-mini", mode=mode).complete(reqs)
    # completion_tokens = visible + reasoning (the fake bills ceil(chars / 4) per visible text)
    visible = [math.ceil(len(default_answer(messages(r))) / 4) for r in reqs]
    assert [r.usage["output_tokens"] for r in out] == [v + 50 for v in visible]
    assert [r.usage["reasoning_tokens"] for r in out] == [50, 50, 50]
    rows = report_rows(tmp_path)  # spend rows as answers arrive, plus the call's summary row
    assert sum(int(row["output_tokens"]) for row in rows) == sum(visible) + 150
    prompt = sum(math.ceil(len(r.messages[0].content) / 4) for r in reqs)
    per_million = {"realtime": (1.10, 4.40), "batch": (0.55, 2.20)}[mode]
    expected = (prompt * per_million[0] + (sum(visible) + 150) * per_million[1]) / 1e6
    assert sum(float(row["cost_usd"]) for row in rows) == pytest.approx(expected, abs=1e-6)
    # max_completion_tokens (what reasoning models take) reached the API untouched
    assert [b["max_completion_tokens"] for b in server.bodies] == [400, 400, 400]


def test_max_tokens_reaches_a_reasoning_model_as_max_completion_tokens(server, tmp_path, prices):
    """The fake answers max_tokens with the API's 400 for reasoning models (see the next test
    file, test_llm_reasoning.py): the request is answered because it went out renamed."""
    out = client(server, tmp_path, prices, model="o3-mini").complete(
        ask(["x"], "o3-mini", {"max_tokens": 10})
    )
    assert out[0].text
    assert "max_tokens" not in server.bodies[0]
    assert server.bodies[0]["max_completion_tokens"] == 10
    assert server.counts["POST /v1/chat/completions"] == 1


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_safety_blocks_are_final_answers_never_bought_again(server, tmp_path, prices, mode):
    reqs = ask([f"please {REFUSE}", f"please {FILTER}", "fine"])
    out = client(server, tmp_path, prices, mode=mode).complete(reqs)
    assert [r.text for r in out] == ["", "", default_answer(messages(reqs[2]))]
    # asked once each (not retried, no resubmission), and cached: a rerun buys nothing
    assert all(server.received[conversation_id(messages(r))] == 1 for r in reqs)
    again = client(server, tmp_path, prices, mode=mode).complete(reqs)
    assert all(r.cached for r in again)
    assert all(server.received[conversation_id(messages(r))] == 1 for r in reqs)
    assert server.counts["POST /v1/batches"] == (1 if mode == "batch" else 0)


def test_backend_reports_the_refusal_reason(server):
    backend = OpenAIBackend(SECRET, server.url)
    refused, filtered = ask([f"a {REFUSE}", f"b {FILTER}"])

    async def both():
        try:
            return [await backend.agenerate(refused), await backend.agenerate(filtered)]
        finally:
            await backend.aclose()

    first, second = asyncio.run(both())
    assert (first.text, first.refusal) == ("", f"openai: refusal: {REFUSAL_TEXT}")
    assert (second.text, second.refusal) == ("", "openai: finish_reason content_filter")
    assert first.usage["output_tokens"] == math.ceil(len(REFUSAL_TEXT) / 4)


def test_batch_answers_holding_unicode_line_separators_are_kept(server, tmp_path, prices):
    server.answer_fn = lambda m: f"one\u2028two\u2029three\u0085four {m[-1]['content']}"
    reqs = ask([f"sep {i}" for i in range(5)])
    out = client(server, tmp_path, prices, mode="batch").complete(reqs)
    assert [r.text for r in out] == [f"one\u2028two\u2029three\u0085four sep {i}" for i in range(5)]
    assert server.counts["POST /v1/batches"] == 1 and batch_requests_created(server) == 5


def test_batch_deterministic_item_error_is_reported_not_resubmitted(server, tmp_path, prices):
    reqs = ask(["ok 0", f"huge {TOO_LONG}", "ok 1"])
    with pytest.raises(LLMError) as info:
        client(server, tmp_path, prices, mode="batch").complete(reqs, desc="teacher")
    message = str(info.value)
    assert "1 of 3 request(s)" in message and reqs[1].key[:12] in message
    assert "context_length_exceeded" in message and "HTTP 400" in message
    assert server.counts["POST /v1/batches"] == 1 and server.counts["POST /v1/files"] == 1
    cached = ResponseCache(tmp_path / "cache").get_many({r.key: r for r in reqs})
    assert set(cached) == {reqs[0].key, reqs[2].key}  # the others were kept


def test_batch_validation_failure_stops_at_once_naming_the_code(server, tmp_path, prices):
    server.batch_outcomes.append("failed:invalid_json_line")
    reqs = ask(["v 0", "v 1"])
    with pytest.raises(LLMError) as info:
        client(server, tmp_path, prices, mode="batch").complete(reqs)
    message = str(info.value)
    assert "invalid_json_line" in message and "deterministic" in message
    assert all(r.key[:12] in message for r in reqs)
    assert server.counts["POST /v1/batches"] == 1 and server.counts["POST /v1/files"] == 1


def test_transient_batch_failures_back_off_before_resubmitting(server, tmp_path, prices):
    # a transient batch failure twice (the queue limit splits instead: test_llm_openai_queue)
    server.batch_outcomes.extend(["failed:server_error", "failed:server_error"])
    llm = client(server, tmp_path, prices, mode="batch", poll_interval_s=0.5)
    waits: list[tuple[float, int]] = []  # (seconds, batches created when the wait began)

    async def sleep(seconds):
        waits.append((seconds, server.counts["POST /v1/batches"]))

    llm.sleep = sleep
    reqs = ask(["t 0", "t 1"])
    out = llm.complete(reqs)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in reqs]
    assert server.counts["POST /v1/batches"] == 3
    # poll_interval_s doubled per failed attempt, waited before each resubmission
    backoffs = [w for w in waits if w[0] != 0.5]
    assert backoffs == [(0.5 * 2, 1), (0.5 * 4, 2)]


@pytest.mark.parametrize("lost", ["lost:500", "lost:drop"])
def test_lost_create_reply_does_not_buy_the_batch_twice(server, tmp_path, prices, lost):
    server.create_batch_faults.append(lost)
    reqs = ask([f"once {i}" for i in range(6)])
    out = client(server, tmp_path, prices, mode="batch").complete(reqs)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in reqs]
    assert len(server.batches) == 1 and batch_requests_created(server) == 6
    assert all(server.answered[conversation_id(messages(r))] == 1 for r in reqs)
    assert server.counts["GET /v1/batches"] == 1  # looked up by its tag before re-creating


def test_permanent_submit_error_becomes_an_llm_error_naming_the_batch(server, tmp_path, prices):
    server.create_batch_faults.append("reject:403")
    reqs = ask(["denied 0", "denied 1"])
    with pytest.raises(LLMError) as info:
        client(server, tmp_path, prices, mode="batch").complete(reqs)
    message = str(info.value)
    assert "submitting batch ed-" in message and "HTTP 403" in message
    assert reqs[0].key[:12] in message and "2 request(s)" in message
    assert server.counts["POST /v1/batches"] == 1  # a 403 is not retried


def test_unknown_batch_on_resume_becomes_an_llm_error_naming_it(server, tmp_path, prices):
    reqs = ask(["gone 0"])
    cache = ResponseCache(tmp_path / "cache")
    cache.add_submission("ed-old", "openai", "gpt-4o", reqs)
    cache.set_batch_id("ed-old", "batch-deleted")
    with pytest.raises(LLMError, match=r"polling batch batch-deleted .*HTTP 404"):
        client(server, tmp_path, prices, mode="batch").complete(reqs)
