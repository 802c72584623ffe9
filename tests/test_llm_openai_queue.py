"""OpenAI's enqueued-token limit, through the real openai SDK against the fake OpenAI API.

The fake enforces the organisation's limit across the batches it has in flight and fails a
batch over it as the API does (``failed``, ``errors.data[].code == "token_limit_exceeded"``).
The expected batches follow from the scenario: every prompt below is 400 characters, which the
fake counts as 100 tokens (ceil(chars / 4)), so its limit of 350 takes three at a time.
"""

from __future__ import annotations

import pytest

from empathy_distill.llm import ChatRequest, Message, make_client, settings
from empathy_distill.llm.backends.openai_queue import (
    MAX_DRAIN_S,
    QUEUE_MARGIN,
    BatchQueue,
    chunk_tokens,
)
from empathy_distill.llm.pricing import approx_request_tokens
from tests.servers.base import default_answer
from tests.servers.openai_server import OpenAIServer

MODEL = "gpt-queue-test"
PRICES_YAML = f"""
models:
  {MODEL}:
    realtime: {{input: 2.50, output: 10.00}}
    batch: {{input: 1.25, output: 5.00}}
"""
FAKE_LIMIT = 350  # the fake's tokens: three 100-token prompts fit, four do not


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        srv.enqueued_token_limit = FAKE_LIMIT
        yield srv


@pytest.fixture(autouse=True)
def key_and_settings(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    yield
    settings.configure(None)  # back to the defaults for the next test


def client_for(server, tmp_path, **extra):
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES_YAML)
    endpoint = {
        "backend": "openai",
        "model": MODEL,
        "mode": "batch",
        "base_url": server.url,
        "poll_interval_s": 0.01,
        "max_retries": 3,
        **extra,
    }
    client = make_client(
        endpoint, cache_dir=tmp_path / "cache", price_table=prices, show_progress=False
    )
    client.sleeps = []

    async def record(seconds: float) -> None:
        client.sleeps.append(seconds)

    client.sleep = record
    return client


def requests(n):
    return [ChatRequest(MODEL, (Message("user", f"{i:04d}" + "x" * 396),)) for i in range(n)]


def batch_keys(server) -> list[frozenset[str]]:
    """custom_ids of every batch created, in order."""
    out = []
    for batch in server.batches.values():
        lines = server.files[batch["input_file_id"]].decode().split("\n")
        out.append(frozenset(x.split('"custom_id":"')[1].split('"')[0] for x in lines if x))
    return out


def test_a_refused_batch_is_split_in_two_never_resubmitted_unchanged(server, tmp_path):
    batch = requests(8)
    out = client_for(server, tmp_path).complete(batch)
    assert [r.text for r in out] == [
        default_answer([m.as_dict() for m in r.messages]) for r in batch
    ]
    sizes = [len(keys) for keys in batch_keys(server)]
    statuses = [b["status"] for b in server.batches.values()]
    # 8 x 100 tokens refused; its first half (4 x 100) refused too; then halves of that (2 x
    # 100) go one at a time, each fitting beside nothing else of ours
    assert sizes == [8, 4, 2, 2, 2, 2]
    assert statuses == ["failed", "failed"] + ["completed"] * 4
    assert server.counts["POST /v1/batches"] == 6
    assert len(set(batch_keys(server))) == 6  # no batch went twice
    assert sorted(server.answered.values()) == [1] * 8
    codes = {
        e["code"] for b in server.batches.values() for e in (b["errors"] or {}).get("data", [])
    }
    assert codes == {"token_limit_exceeded"}


def test_the_configured_limit_cuts_and_paces_batches_so_none_is_refused(server, tmp_path):
    per_request = approx_request_tokens(requests(1)[0])  # our estimate, >= the fake's 100
    # a limit whose planned share (QUEUE_MARGIN of it) holds three requests and not four
    limit = int(3.5 * per_request / QUEUE_MARGIN)
    assert 3 * per_request <= int(limit * QUEUE_MARGIN) < 4 * per_request
    settings.configure({"openai": {"max_enqueued_tokens": {MODEL: limit}}})
    batch = requests(8)
    client_for(server, tmp_path).complete(batch)
    assert [len(keys) for keys in batch_keys(server)] == [3, 3, 2]
    assert [b["status"] for b in server.batches.values()] == ["completed"] * 3
    assert server.counts["POST /v1/batches"] == 3
    assert sorted(server.answered.values()) == [1] * 8


def test_a_limit_for_another_model_changes_nothing(server, tmp_path):
    settings.configure({"openai": {"max_enqueued_tokens": {"gpt-other": 100}}})
    server.enqueued_token_limit = None
    client_for(server, tmp_path).complete(requests(5))
    assert [len(keys) for keys in batch_keys(server)] == [5]


def test_after_a_refusal_nothing_goes_until_fewer_of_ours_are_in_flight():
    """The drain, with a clock of our own: fewer batches in flight, or MAX_DRAIN_S, ends it."""
    now = [0.0]
    queue = BatchQueue(None, clock=lambda: now[0])
    reqs = requests(4)
    one = chunk_tokens(reqs[:1])

    def split(chunk):
        return [chunk]

    assert queue.plan(reqs, split) == [reqs]  # no limit known: one batch
    queue.submitted("a", reqs[:2])
    queue.submitted("b", reqs[2:])
    queue.refused("b")  # b's 2 requests: the cap is now one request's tokens
    assert queue.cap() == one
    assert queue.plan(reqs[2:], split) == []  # "a" still in flight, as when b was refused
    assert queue.drain is not None
    now[0] = MAX_DRAIN_S  # the drain is bounded ...
    assert queue.plan(reqs[2:], split) == []
    assert queue.drain is None
    # ... but "a" alone holds more than the learned cap: the halves wait for it
    queue.finished("a")
    assert queue.plan(reqs[2:], split) == [reqs[2:3]]  # halves, one at a time
    queue.submitted("c", reqs[2:3])
    assert queue.plan(reqs[3:], split) == []
    queue.finished("c")
    assert queue.plan(reqs[3:], split) == [reqs[3:]]


def test_a_refused_batch_of_an_earlier_process_halves_what_goes_next():
    queue = BatchQueue(None)
    reqs = requests(4)
    queue.running("old")  # resumed: its size is unknown
    queue.refused("old")
    assert queue.plan(reqs, lambda c: [c]) == [reqs[:2]]  # then the other half, in turn
