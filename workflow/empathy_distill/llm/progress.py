"""Progress bar of a ``complete`` call, and running its coroutine from sync code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class Progress:
    """tqdm bar counting done (answered now) / cached / failed."""

    def __init__(self, desc: str, total: int, cached: int, enabled: bool) -> None:
        self.cached = cached
        self.done = 0
        self.failed = 0
        self.bar = tqdm(
            total=total, initial=cached, desc=desc, unit="req", disable=not enabled, mininterval=0.5
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix(done=self.done, cached=self.cached, failed=self.failed, refresh=False)

    def answered(self) -> None:
        self.done += 1
        self.bar.update(1)
        self._postfix()

    def fail(self) -> None:
        self.failed += 1
        self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        self._postfix()
        self.bar.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from inside a running loop (e.g. Jupyter): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
