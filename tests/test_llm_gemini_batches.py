"""Gemini batches that end oddly, through the real google-genai SDK against the fake Gemini API.

What the fake sends is what the API and the SDK do (tests/servers/gemini_server.py): fields newer
than the installed SDK, answers holding U+2028/U+2029/U+0085 written raw, a job that ends
BATCH_STATE_EXPIRED (unmapped by google-genai 1.22, the floor), a state no SDK knows, and a
result line still invalid once unknown fields are dropped. The expected counts come from the
scenario (how many batches must be bought), never from the code under test. This file runs on
the installed SDK and, in CI, on the floor (.ci/oldest_sdks.sh runs tests/test_llm_*.py).
"""

from __future__ import annotations

import json
import logging

import pytest
from google.genai import types

from empathy_distill.llm import ChatRequest, LLMError, Message, make_client
from empathy_distill.llm.backends.base import jsonl_lines
from empathy_distill.llm.backends.gemini_results import (
    BATCH_STATES,
    batch_state,
    drop_unknown_fields,
    parse_response,
)
from empathy_distill.llm.cache import ResponseCache
from tests.servers.base import default_answer
from tests.servers.gemini_server import GeminiServer

MODEL = "gemini-3.5-flash"
PRICES_YAML = """
models:
  gemini-3.5-flash:
    realtime: {input: 1.50, output: 9.00}
    batch: {input: 0.75, output: 4.50}
"""
SEPARATORS = "one\u2028two\u2029three\u0085four"


@pytest.fixture
def srv():
    with GeminiServer() as server:
        yield server


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-0123456789")


def client_for(srv, tmp_path, **extra):
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES_YAML)
    endpoint = {
        "backend": "gemini",
        "model": MODEL,
        "mode": "batch",
        "base_url": srv.url,
        "poll_interval_s": 0.01,
        "max_retries": 3,
        **extra,
    }
    client = make_client(
        endpoint, cache_dir=tmp_path / "cache", price_table=prices, show_progress=False
    )

    async def no_sleep(seconds: float) -> None:
        return None

    client.sleep = no_sleep
    return client


def requests(*texts):
    return [ChatRequest(MODEL, (Message("system", "be kind"), Message("user", t))) for t in texts]


def messages(request):
    return [m.as_dict() for m in request.messages]


def creations(srv) -> int:
    """Batches bought: create calls received (whatever API version path the SDK uses)."""
    return sum(n for route, n in srv.counts.items() if route.endswith(":batchGenerateContent"))


def test_fields_newer_than_the_sdk_cost_nothing_extra(srv, tmp_path):
    srv.extra_fields = True  # modelStatus, a field in each candidate, one on the line itself
    batch = requests("a", "b", "c", "d")
    out = client_for(srv, tmp_path).complete(batch)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in batch]
    assert creations(srv) == 1
    assert sorted(srv.answered.values()) == [1, 1, 1, 1]


def test_line_separators_inside_answers_are_kept(srv, tmp_path):
    srv.answer_fn = lambda m: f"{SEPARATORS} {m[-1]['content']}"
    batch = requests("s0", "s1", "s2")
    out = client_for(srv, tmp_path).complete(batch)
    assert [r.text for r in out] == [f"{SEPARATORS} s{i}" for i in range(3)]
    assert creations(srv) == 1
    # the file really held them raw (not \\u-escaped): the case str.splitlines cut apart
    [output] = [name for name in srv.file_data if name.startswith("files/batch-")]
    assert "\u2028".encode() in srv.file_data[output]


def test_expired_batch_is_bought_again_for_its_unanswered_items(srv, tmp_path):
    srv.batch_outcomes.append("expired")
    batch = requests("e0", "e1", "e2", "e3")
    out = client_for(srv, tmp_path).complete(batch)
    assert [r.text for r in out] == [default_answer(messages(r)) for r in batch]
    # the expired job answered (and billed) nothing; one more batch answers all four once
    assert creations(srv) == 2
    assert sorted(srv.answered.values()) == [1, 1, 1, 1]
    states = [b["metadata"]["state"] for b in srv.batches.values()]
    assert states == ["BATCH_STATE_EXPIRED", "BATCH_STATE_SUCCEEDED"]


def test_unknown_state_stops_polling_naming_it(srv, tmp_path):
    srv.batch_outcomes.append("state:BATCH_STATE_QUARANTINED")
    with pytest.raises(LLMError, match="BATCH_STATE_QUARANTINED"):
        client_for(srv, tmp_path).complete(requests("u0", "u1"))
    assert creations(srv) == 1
    polls = sum(
        n for route, n in srv.counts.items() if route.startswith("GET ") and "/batches/" in route
    )
    assert polls == 2  # running, then the unknown state: no polling on and on
    # the batch stays recorded: a rerun with newer code reads it instead of buying it again
    [open_sub] = ResponseCache(tmp_path / "cache").open_submissions("gemini", MODEL)
    assert open_sub.batch_id == next(iter(srv.batches))


def test_unreadable_result_is_final_kept_and_never_bought_again(srv, tmp_path, caplog):
    srv.unreadable_results = 1
    batch = requests("r0", "r1", "r2")
    client = client_for(srv, tmp_path)
    with caplog.at_level(logging.WARNING), pytest.raises(LLMError) as info:
        client.complete(batch)
    assert "1 of 3 request(s)" in str(info.value) and "unreadable result line" in str(info.value)
    assert creations(srv) == 1  # not resubmitted: the answer was paid for
    cached = ResponseCache(tmp_path / "cache").get_many({r.key: r for r in batch})
    assert len(cached) == 2
    [missing] = [r for r in batch if r.key not in cached]
    [kept] = list((tmp_path / "cache" / "unreadable").glob("*.jsonl"))
    [record] = [json.loads(x) for x in kept.read_text(encoding="utf-8").split("\n") if x]
    assert record["key"] == missing.key
    line = json.loads(record["line"])  # the raw line, as received
    assert line["key"] == missing.key
    assert line["response"]["usageMetadata"]["promptTokenCount"] == "not a number"
    answer = line["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert answer == default_answer(messages(missing))
    assert "cannot be read" in caplog.text


def test_unknown_fields_are_dropped_at_every_depth_and_known_ones_kept():
    raw = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "hi", "partNew": 1}]},
                "finishReason": "STOP",
                "candidateNew": {"x": 1},
            }
        ],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2, "usageNew": 3},
        "modelVersion": MODEL,
        "responseNew": [1, 2],
    }
    kept = drop_unknown_fields(types.GenerateContentResponse, raw)
    assert "responseNew" not in kept and "candidateNew" not in kept["candidates"][0]
    assert kept["candidates"][0]["content"]["parts"] == [{"text": "hi"}]
    assert kept["usageMetadata"] == {"promptTokenCount": 7, "candidatesTokenCount": 2}
    assert raw["responseNew"] == [1, 2]  # the input is not changed
    response = parse_response(raw)
    assert response.text == "hi" and response.usage_metadata.prompt_token_count == 7


def test_every_sdk_job_state_is_mapped():
    # google-genai's JobState lists every JOB_STATE_* of its version; each must be known here.
    assert {s.value for s in types.JobState} <= set(BATCH_STATES)
    for prefix in ("JOB_STATE_", "BATCH_STATE_"):
        assert batch_state(prefix + "EXPIRED", "b") == "expired"
        assert batch_state(prefix + "SUCCEEDED", "b") == "completed"
        assert batch_state(prefix + "RUNNING", "b") == "running"


def test_jsonl_lines_split_on_newline_only():
    text = '{"a": "x\u2028y\u2029z\u0085w"}\n{"b": 1}\n'
    assert jsonl_lines(text.encode()) == ['{"a": "x\u2028y\u2029z\u0085w"}', '{"b": 1}', ""]
