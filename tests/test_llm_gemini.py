"""The Gemini backend through the real google-genai SDK against the fake Gemini API (no network).

Expected numbers come from the fake's own rules (tokens = ceil(chars / 4)) and from the prices
written here, never from the code under test.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from google import genai
from google.genai import types

from empathy_distill.llm import ChatRequest, LLMError, Message, make_client
from empathy_distill.llm.backends.gemini_backend import GeminiBackend, UnjoinableBatchError
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.errors import PermanentError, TransientError
from empathy_distill.llm.pricing import PriceTable
from tests.servers.base import conversation_id, default_answer
from tests.servers.gemini_server import DEFAULT_BLOCKS, GeminiFault, GeminiServer

ROOT = Path(__file__).resolve().parents[1]
PRICES = ROOT / "resources" / "prices.yaml"
SECRET = "gm-test-DO-NOT-LEAK-0123456789"
MODEL = "gemini-3.5-flash"
#: USD per 1M tokens of gemini-3.5-flash (https://ai.google.dev/gemini-api/docs/pricing).
REALTIME = (1.50, 9.00)
BATCH = (0.75, 4.50)


@pytest.fixture
def srv():
    with GeminiServer() as server:
        yield server


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)


def client_for(srv, tmp_path, **extra):
    endpoint = {
        "backend": "gemini",
        "model": MODEL,
        "base_url": srv.url,
        "poll_interval_s": 0.01,
        "max_retries": 3,
        **extra,
    }
    client = make_client(
        endpoint,
        cache_dir=tmp_path / "cache",
        price_table=PRICES,
        cost_report=tmp_path / "costs.csv",
        show_progress=False,
    )
    client.sleeps = []

    async def record(seconds: float) -> None:
        client.sleeps.append(seconds)

    client.sleep = record
    return client


def requests(*texts, sampling=None):
    return [
        ChatRequest(MODEL, (Message("system", "be kind"), Message("user", t)), sampling or {})
        for t in texts
    ]


def messages(request):
    return [m.as_dict() for m in request.messages]


def received(srv, request):
    return srv.received[conversation_id(messages(request))]


def run(coro_fn, srv):
    """Run ``coro_fn(backend)`` on a fresh backend bound to the fake."""

    async def main():
        backend = GeminiBackend(SECRET, srv.url, timeout_s=10)
        try:
            return await coro_fn(backend)
        finally:
            await backend.aclose()

    return asyncio.run(main())


# 1. Retired default model ----------------------------------------------------------------------
def test_retired_model_is_refused_naming_model_date_and_price_file(tmp_path):
    table = PriceTable.load(PRICES)
    with pytest.raises(LLMError, match=r"gemini-2\.0-flash.*2026-06-01.*prices\.yaml"):
        table.price("gemini", "gemini-2.0-flash", "realtime")
    with pytest.raises(LLMError, match="retired by its provider on 2026-06-01"):
        make_client(
            {"backend": "gemini", "model": "gemini-2.0-flash"},
            cache_dir=tmp_path,
            price_table=PRICES,
        )
    bad = tmp_path / "prices.yaml"
    bad.write_text("models: {}\nretired: {old-model: soon}\n")
    with pytest.raises(LLMError, match=r"prices\.yaml: retired\.old-model must be a shutdown date"):
        PriceTable.load(bad)


def test_default_gemini_judge_is_current_and_priced():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    model = config["judges"]["gemini"]["model"]
    assert model == MODEL
    table = PriceTable.load(PRICES)
    assert model not in table.retired
    assert (
        table.price("gemini", model, "realtime").input,
        table.price("gemini", model, "realtime").output,
    ) == REALTIME
    assert (
        table.price("gemini", model, "batch").input,
        table.price("gemini", model, "batch").output,
    ) == BATCH


# 2. Transport errors of whichever HTTP library the SDK uses -----------------------------------
def test_dropped_connection_is_retried(srv, tmp_path):
    srv.faults.append(GeminiFault(drop=True))
    [request] = requests("hello")
    [out] = client_for(srv, tmp_path).complete([request])
    assert out.text == default_answer(messages(request))
    assert received(srv, request) == 2


HTTPX2_ONLY = textwrap.dedent(
    """
    import asyncio, sys
    sys.modules["httpx"] = None  # an install without httpx: importing it fails
    from google.genai import _api_client
    _api_client.has_aiohttp = False  # the SDK's own httpx2 transport for async calls
    from empathy_distill.llm.backends.gemini_backend import GeminiBackend
    from empathy_distill.llm.request import ChatRequest, Message
    from empathy_distill.llm.retry import with_retries

    async def main():
        backend = GeminiBackend("key", sys.argv[1], timeout_s=10)
        request = ChatRequest("gemini-3.5-flash", (Message("user", "hello"),))
        call = lambda: backend.agenerate(request)  # noqa: E731
        answer = await with_retries(call, 2, sleep=lambda s: asyncio.sleep(0))
        kind = type(backend.client._api_client._async_httpx_client).__mro__
        print(answer.text, any(c.__module__.startswith("httpx2") for c in kind))

    asyncio.run(main())
    """
)


def test_httpx2_transport_error_is_retried_without_httpx_installed(srv):
    pytest.importorskip("httpx2", reason="google-genai < 3 sends through httpx, not httpx2")
    srv.faults.append(GeminiFault(drop=True))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "workflow"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", HTTPX2_ONLY, srv.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = default_answer([{"role": "user", "content": "hello"}])
    assert done.stdout.split() == [expected, "True"]
    assert srv.received[conversation_id([{"role": "user", "content": "hello"}])] == 2


# 3. Batch Mode from a JSONL file, joined by key -------------------------------------------------
def test_batch_uploads_jsonl_file_and_joins_shuffled_results_by_key(srv, tmp_path):
    sampling = {"temperature": 0, "max_tokens": 7}
    batch = requests(*[f"b{i}" for i in range(6)], sampling=sampling)
    out = client_for(srv, tmp_path, mode="batch").complete(batch)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in batch]
    assert len(srv.batches) == 1 and all(received(srv, r) == 1 for r in batch)
    [uploaded] = [f for f in srv.files.values() if f.get("source") == "UPLOADED"]
    assert uploaded["mimeType"] == "jsonl"
    lines = [json.loads(x) for x in srv.file_data[uploaded["name"]].splitlines()]
    assert [line["key"] for line in lines] == [r.key for r in batch]
    # a batch line asks exactly what the real-time call asks
    [realtime] = requests("rt", sampling=sampling)
    client_for(srv, tmp_path).complete([realtime])
    sent = srv.requests_seen[-1]
    assert lines[0]["request"]["generationConfig"] == sent["generationConfig"]
    assert sent["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 7}
    assert lines[0]["request"]["systemInstruction"]["parts"] == sent["systemInstruction"]["parts"]
    output = [f for f in srv.files if f.startswith("files/batch-")]
    keys_out = [json.loads(x)["key"] for x in srv.file_data[output[0]].splitlines()]
    assert keys_out != [r.key for r in batch]  # shuffled: a join by position would be wrong


def test_lost_result_is_resubmitted_alone(srv, tmp_path):
    batch = requests("x0", "x1", "x2")
    srv.batch_drop_items = 1
    out = client_for(srv, tmp_path, mode="batch").complete(batch)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in batch]
    assert len(srv.batches) == 2 and all(received(srv, r) == 1 for r in batch)


def inline_batch(srv, tag, batch):
    """A batch of inlined requests, as earlier versions of this backend created them."""
    if "metadata" not in getattr(types, "InlinedRequest", types.Content).model_fields:
        pytest.skip("this google-genai has no InlinedRequest.metadata")
    sdk = genai.Client(api_key=SECRET, http_options=types.HttpOptions(base_url=srv.url))
    src = [
        types.InlinedRequest(
            contents=[types.Content(role="user", parts=[types.Part(text=r.messages[-1].content)])],
            config=types.GenerateContentConfig(system_instruction="be kind"),
            metadata={"key": r.key},
        )
        for r in batch
    ]
    job = sdk.batches.create(model=MODEL, src=src, config={"display_name": tag})
    return job.name


def test_unjoinable_batch_fails_once_and_is_not_resubmitted(srv, tmp_path):
    batch = requests("i0", "i1")
    client = client_for(srv, tmp_path, mode="batch")
    name = inline_batch(srv, "ed-old", batch)  # the service echoes no metadata (#2008)
    cache = ResponseCache(tmp_path / "cache")
    cache.add_submission("ed-old", "gemini", MODEL, batch)
    cache.set_batch_id("ed-old", name)
    with pytest.raises(
        LLMError,
        match=rf"not retried\): UnjoinableBatchError: Gemini batch {name} finished but 2 of",
    ):
        client.complete(batch)
    assert isinstance(UnjoinableBatchError("x"), PermanentError)
    assert len(srv.batches) == 1  # nothing was bought again


def test_inlined_results_with_metadata_still_join(srv):
    batch = requests("m0", "m1")
    if "metadata" not in types.InlinedResponse.model_fields:
        pytest.skip("this google-genai drops the metadata of inlined responses")
    srv.echo_metadata = True
    name = inline_batch(srv, "ed-meta", batch)

    async def results(backend):
        while (await backend.poll_batch(name)).state != "completed":
            pass
        return await backend.batch_results(name)

    got = run(results, srv)
    assert {k: a.text for k, a in got.answers.items()} == {
        r.key: default_answer(messages(r)) for r in batch
    }


def test_find_batch_by_display_name_across_pages(srv):
    batch = requests("f0")

    async def scenario(backend):
        names = [await backend.submit_batch(f"ed-{i}", batch) for i in range(5)]
        found = [await backend.find_batch(f"ed-{i}") for i in range(5)]
        return names, found, await backend.find_batch("ed-missing")

    names, found, missing = run(scenario, srv)
    assert found == names and missing is None
    lists = sum(n for route, n in srv.counts.items() if route.endswith("/batches"))
    assert lists > 5  # the oldest batches are on later pages


# 4. Thinking tokens are billed output ----------------------------------------------------------
@pytest.mark.parametrize(("mode", "price"), [("realtime", REALTIME), ("batch", BATCH)])
def test_thinking_tokens_are_stored_and_costed_as_output(srv, tmp_path, mode, price):
    srv.answer_fn = lambda _messages: "A"  # a 1-token verdict
    srv.thinking_tokens = 800
    [request] = requests("Which response is more empathetic? Answer A or B.")
    # an explicit thinking budget: the cap sent is 256 + 1024, room for 800 thoughts and "A"
    [out] = client_for(srv, tmp_path, mode=mode, thinking_budget=1024).complete([request])
    prompt = sum(math.ceil(len(m.content) / 4) for m in request.messages)
    assert out.text == "A"
    assert out.usage == {"input_tokens": prompt, "output_tokens": 801}
    with open(tmp_path / "costs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))  # a spend row, then the call's summary row
    expected = (prompt * price[0] + 801 * price[1]) / 1_000_000
    assert sum(float(row["cost_usd"]) for row in rows) == pytest.approx(expected, abs=1e-6)
    assert sum(int(row["output_tokens"]) for row in rows) == 801


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_thinking_that_spends_the_whole_budget_is_a_final_empty_answer(srv, tmp_path, mode):
    srv.thinking_tokens = 800
    request = ChatRequest(
        model=MODEL, messages=(Message("user", "judge this"),), sampling={"max_tokens": 64}
    )
    client = client_for(srv, tmp_path, mode=mode)
    [out] = client.complete([request])
    assert out.text == ""
    assert out.refusal is not None and "MAX_TOKENS" in out.refusal
    assert out.usage["output_tokens"] == 64  # the thoughts were billed
    again = client_for(srv, tmp_path, mode=mode).complete([request])
    assert again[0].cached and again[0].refusal == out.refusal
    assert received(srv, request) == 1  # never bought again


def test_max_completion_tokens_maps_to_max_output_tokens(srv, tmp_path):
    request = ChatRequest(
        model=MODEL,
        messages=(Message("user", "short please"),),
        sampling={"max_completion_tokens": 33},
    )
    [out] = client_for(srv, tmp_path).complete([request])
    assert out.text == default_answer(messages(request))
    assert srv.requests_seen[-1]["generationConfig"]["maxOutputTokens"] == 33


# 5. 429: the wait is in the body; a per-day quota stops the run -------------------------------
def test_retry_delay_of_the_error_body_is_honoured(srv, tmp_path):
    srv.faults.append(GeminiFault(429, retry_delay="17s"))
    [request] = requests("slow down")
    client = client_for(srv, tmp_path)
    [out] = client.complete([request])
    assert out.text == default_answer(messages(request))
    assert client.sleeps == [17.0]
    assert received(srv, request) == 2


def test_per_day_quota_stops_at_once_naming_the_quota(srv, tmp_path):
    quota = "GenerateRequestsPerDayPerProjectPerModel"
    srv.faults.extend(GeminiFault(429, retry_delay="43000s", quota_id=quota) for _ in range(20))
    batch = requests("d0", "d1", "d2")
    client = client_for(srv, tmp_path, concurrency=1, max_retries=8)
    with pytest.raises(LLMError, match=quota):
        client.complete(batch)
    assert client.sleeps == []
    assert sum(n for route, n in srv.counts.items() if route.endswith(":generateContent")) == 1


# 6. Safety blocks are final answers ------------------------------------------------------------
def expected_refusal(prompt):
    kind, reason = DEFAULT_BLOCKS[prompt]
    return f"gemini: {'finish_reason' if kind == 'finish' else 'block_reason'} {reason}"


def test_safety_blocks_are_refusals_in_real_time(srv, tmp_path):
    planted = requests(*DEFAULT_BLOCKS)

    async def answers(backend):
        return [await backend.agenerate(r) for r in planted]

    got = run(answers, srv)
    assert [a.refusal for a in got] == [expected_refusal(p) for p in DEFAULT_BLOCKS]
    assert all(a.text == "" for a in got)
    prompt = sum(math.ceil(len(m.content) / 4) for m in planted[0].messages)
    assert got[0].usage == {"input_tokens": prompt, "output_tokens": 0}
    out = client_for(srv, tmp_path / "c").complete(planted)  # cached as answers, not retried
    assert [r.text for r in out] == [""] * len(planted)
    assert all(received(srv, r) == 2 for r in planted)  # once per run above, never retried


def test_safety_blocks_are_refusals_in_batch_results(srv, tmp_path):
    planted = requests(*DEFAULT_BLOCKS)

    async def scenario(backend):
        name = await backend.submit_batch("ed-safety", planted)
        while (await backend.poll_batch(name)).state != "completed":
            pass
        return await backend.batch_results(name)

    got = run(scenario, srv)
    assert {k: a.refusal for k, a in got.answers.items()} == {
        r.key: expected_refusal(r.messages[-1].content) for r in planted
    }
    assert got.errors == {}


# 9. A created batch whose reply was lost is found, not created twice --------------------------
def test_lost_create_reply_finds_the_created_batch(srv, tmp_path):
    batch = requests("lost0", "lost1")
    srv.create_reply_status.append(500)

    async def scenario(backend):
        with pytest.raises(TransientError):
            await backend.submit_batch("ed-lost", batch)
        return await backend.find_batch("ed-lost")

    assert run(scenario, srv) == next(iter(srv.batches))
    srv.create_reply_status.append(500)
    out = client_for(srv, tmp_path, mode="batch").complete(batch)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in batch]
    assert len(srv.batches) == 2  # one from the scenario above, one (not two) from the client
    assert all(received(srv, r) == 1 for r in batch)
