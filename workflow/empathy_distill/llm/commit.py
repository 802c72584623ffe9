"""Group commit: answers that arrive in the same event-loop tick share one SQLite transaction.

WHY: at high concurrency one transaction per answer (a WAL append and lock round trip, about
0.1 ms that blocks the event loop) was a measurable share of the client's time
(``benchmarks/teacher_throughput.py``). Holding answers back to commit them in larger groups
would trade durability for speed, and an answer received is an answer paid for: a SIGKILL must
not lose it. So nothing waits: the first answer of a tick schedules one write for the next loop
iteration, which runs before the loop blocks on the network again, and every answer parsed in
between joins it. The window in which a received answer is not yet on disk stays one tick, as
with a write per answer; answers that arrive together simply share the transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``await submit(item)`` returns ``write(items)[i]`` once its group is written."""

    def __init__(self, write: Callable[[list[T]], list[R]]) -> None:
        self._write = write
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._items:
            loop.call_soon(self._flush)
        self._items.append(item)
        self._futures.append(future)
        return await future

    def _flush(self) -> None:
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        try:
            results = self._write(items)
        except Exception as exc:  # e.g. the database stayed locked: every waiter must see it
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)
