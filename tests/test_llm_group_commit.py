"""Grouped cache commits (commit.py, ResponseCache.put_many)."""

from __future__ import annotations

import asyncio

import pytest

from empathy_distill.llm import ChatRequest, Message
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.commit import GroupCommit
from empathy_distill.llm.request import Answer


def request(text: str) -> ChatRequest:
    return ChatRequest("gpt-4o", (Message("user", text),), {"temperature": 0})


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
    # ...but every answer received was paid for: the second ones are charged (the ledger
    # equals the provider's bill), 0.5 + 0.25 stored and 0.5 + 0.25 bought again
    assert cache.count() == 2 and cache.spent_usd() == pytest.approx(1.5)
    # a batch's results read again (a run killed before closing it) were billed once
    c = request("c")
    for _ in range(2):
        cache.put_many([(c, answer, 0.125)], backend="openai", mode="batch", source="batch:b1")
    assert cache.spent_usd() == pytest.approx(1.625)
