"""Client-side throttling: parallel requests, requests per minute, tokens per minute.

WHY: providers answer over-eager clients with 429s (and may suspend keys); staying under the
configured limits is cheaper than retrying. A provider counts the requests and tokens of one
account, not of one process, while a run has several teacher or judge jobs at once (and runs may
share a cache). So the per-minute budgets are token buckets kept in a small SQLite file in the
cache directory, keyed by the account (backend, base URL, model, API-key variable): every
process that talks to that account draws from the same bucket. A semaphore caps the requests in
flight of one process.

Algorithm (one short write transaction per acquire, no polling): a bucket of ``capacity``
tokens refills at ``rate`` tokens/s. ``acquire(n)`` takes ``n`` at once, possibly going
negative, and sleeps until the level it left is back at zero, i.e. ``-level / rate`` seconds.
Over any interval of ``t`` seconds at most ``capacity + rate * t`` tokens are granted, whatever
the number of processes. ``capacity`` is one second's worth (``BURST_S``): providers may enforce
a per-minute limit over shorter windows (OpenAI's rate-limit guide: "60,000 requests/minute may
be enforced as 1,000 requests/second"), so a full minute's burst at start would draw 429s.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

LIMITS_FILE = "rate_limits.sqlite3"
#: Burst allowance of a bucket, in seconds of its rate.
BURST_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    level REAL NOT NULL,
    updated REAL NOT NULL
);
"""


class SharedBucket:
    """A token bucket shared by every process that opens the same file and name."""

    def __init__(self, path: str | Path, name: str, per_minute: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_S)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute("PRAGMA journal_mode=WAL")
        # Bucket levels are worth nothing after an OS crash: no fsync needed.
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)

    def reserve(self, amount: float) -> float:
        """Take ``amount`` tokens now; seconds to wait before using them."""
        # wall clock, not monotonic: the level is shared with other processes
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                row = self._db.execute(
                    "SELECT level, updated FROM buckets WHERE name=?", (self.name,)
                ).fetchone()
                level = self.capacity if row is None else row[0]
                if row is not None:
                    level = min(self.capacity, level + max(0.0, now - row[1]) * self.rate)
                level -= amount
                self._db.execute(
                    "INSERT OR REPLACE INTO buckets (name, level, updated) VALUES (?,?,?)",
                    (self.name, level, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return max(0.0, -level / self.rate)

    async def acquire(self, amount: float) -> None:
        wait = self.reserve(amount)
        if wait > 0:
            await asyncio.sleep(wait)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RateLimits:
    """``concurrency`` requests in flight per process; per-minute budgets shared by account."""

    def __init__(
        self,
        concurrency: int,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        shared_dir: str | Path,
        account: str,
    ) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        path = Path(shared_dir) / LIMITS_FILE
        self.rpm = (
            SharedBucket(path, f"{account}|requests", requests_per_minute)
            if requests_per_minute
            else None
        )
        self.tpm = (
            SharedBucket(path, f"{account}|tokens", tokens_per_minute)
            if tokens_per_minute
            else None
        )

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Hold one of the ``concurrency`` slots after the per-minute budgets allow a request."""
        async with self.semaphore:
            if self.rpm is not None:
                await self.rpm.acquire(1)
            if self.tpm is not None:
                await self.tpm.acquire(max(tokens, 1))
            yield

    def close(self) -> None:
        for bucket in (self.rpm, self.tpm):
            if bucket is not None:
                bucket.close()
