"""The real-time POST (chat_http) and the grouped cache commits (commit.py, put_many)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from empathy_distill.llm import ChatRequest, Message
from empathy_distill.llm.backends.chat_http import ChatPoster, error_message
from empathy_distill.llm.backends.openai_backend import OpenAIBackend
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.commit import GroupCommit
from empathy_distill.llm.errors import TransientError
from empathy_distill.llm.request import Answer
from tests.servers.base import default_answer
from tests.servers.openai_server import OpenAIServer

SECRET = "sk-test-transport-0123456789"


def request(text: str) -> ChatRequest:
    return ChatRequest("gpt-4o", (Message("user", text),), {"temperature": 0})


def header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def test_post_carries_key_organization_project_and_the_sdk_body(monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-test")

    async def run(backend: OpenAIBackend) -> Answer:
        try:
            return await backend.agenerate(request("héllo"))
        finally:
            await backend.aclose()

    with OpenAIServer() as server:
        answer = asyncio.run(run(OpenAIBackend(SECRET, server.url)))
        sent = server.seen_headers[-1]
    assert answer.text == default_answer([{"role": "user", "content": "héllo"}])
    assert answer.model == "gpt-4o" and answer.usage["input_tokens"] > 0
    assert header(sent, "Authorization") == f"Bearer {SECRET}"
    assert header(sent, "OpenAI-Organization") == "org-test"
    assert header(sent, "OpenAI-Project") == "proj-test"
    assert header(sent, "Content-Type") == "application/json"
    assert server.counts["POST /v1/chat/completions"] == 1


def test_refused_connection_is_transient():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def run() -> None:
        poster = ChatPoster(f"http://127.0.0.1:{port}/v1", {}, timeout_s=5)
        try:
            await poster.post({"model": "m", "messages": []})
        finally:
            await poster.aclose()

    with pytest.raises(TransientError, match="Connect"):
        asyncio.run(run())


def test_error_message_forms():
    assert error_message(b'{"error": {"message": "slow down", "type": "x"}}') == "slow down"
    assert error_message(b'{"error": "plain"}') == "plain"
    assert error_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert error_message(b"") == "(empty body)"


def test_answers_of_one_tick_share_one_write_and_keep_their_order():
    writes: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        writes.append(items)
        return [10 * i for i in items]

    async def run() -> tuple[list[int], int]:
        group: GroupCommit[int, int] = GroupCommit(write)
        first = await asyncio.gather(*(group.submit(i) for i in range(5)))
        later = await group.submit(7)
        return first, later

    first, later = asyncio.run(run())
    assert first == [0, 10, 20, 30, 40] and later == 70
    assert writes == [[0, 1, 2, 3, 4], [7]]


def test_a_failed_write_reaches_every_waiter():
    def write(items: list[int]) -> list[int]:
        raise OSError("disk full")

    async def run() -> list[object]:
        group: GroupCommit[int, int] = GroupCommit(write)
        return await asyncio.gather(*(group.submit(i) for i in range(3)), return_exceptions=True)

    assert [str(e) for e in asyncio.run(run())] == ["disk full"] * 3


def test_put_many_reports_which_answers_were_new(tmp_path):
    cache = ResponseCache(tmp_path)
    answer = Answer("text", "gpt-4o", {"input_tokens": 3, "output_tokens": 4})
    a, b = request("a"), request("b")
    assert cache.put(a, answer, cost_usd=0.5, backend="openai", mode="realtime")
    new = cache.put_many(
        [(a, answer, 0.5), (b, answer, 0.25), (b, answer, 0.25)],
        backend="openai",
        mode="realtime",
    )
    assert new == [False, True, False]  # the first answer stored wins
    assert cache.count() == 2 and cache.spent_usd() == pytest.approx(0.75)
