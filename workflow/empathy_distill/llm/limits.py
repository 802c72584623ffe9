"""Client-side throttling: parallel requests, requests per minute, tokens per minute.

WHY: providers answer over-eager clients with 429s (and may suspend keys); staying under the
configured limits is cheaper than retrying. A provider counts the requests and tokens of one
account, not of one process, while a run has several teacher or judge jobs at once (and runs may
share a cache). So the per-minute budgets are token buckets kept in a small SQLite file in the
cache directory, keyed by the account (backend, base URL, model, API-key variable): every
process that talks to that account draws from the same bucket. Requests in flight are capped
per account too, by ``concurrency`` lock files (``flock``): the kernel releases the lock of a
killed process, so a SIGKILL never leaks a slot.

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
import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

LIMITS_FILE = "rate_limits.sqlite3"
SLOTS_DIR = "request_slots"
#: How often a request waiting for a slot held by another process looks again.
SLOT_POLL_S = 0.005
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


class SharedSlots:
    """At most ``n`` requests in flight for every process using ``directory``: ``n`` lock files.

    A process tries first the slots it does not hold itself, so alone it never waits; while
    another process holds them all it looks again every ``SLOT_POLL_S``.
    """

    def __init__(self, directory: str | Path, n: int) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._fds = [
            os.open(directory / f"{i}.lock", os.O_RDWR | os.O_CREAT, 0o644) for i in range(n)
        ]
        self._free = deque(range(n))  # slots this process does not hold

    def try_acquire(self) -> int | None:
        """A free slot, locked now, or None when other processes hold all the others."""
        for _ in range(len(self._free)):
            slot = self._free.popleft()
            try:
                fcntl.flock(self._fds[slot], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held by another process
                self._free.append(slot)
                continue
            return slot
        return None

    async def acquire(self) -> int:
        while (slot := self.try_acquire()) is None:
            await asyncio.sleep(SLOT_POLL_S)
        return slot

    def fileno(self, slot: int) -> int:
        """The lock file descriptor of ``slot``: a child process given it (``pass_fds``) keeps
        the slot held until it exits too, even if this process is killed first."""
        return self._fds[slot]

    def release(self, slot: int) -> None:
        fcntl.flock(self._fds[slot], fcntl.LOCK_UN)
        self._free.append(slot)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class RateLimits:
    """``concurrency`` requests in flight and per-minute budgets, shared by account."""

    def __init__(
        self,
        concurrency: int,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        shared_dir: str | Path,
        account: str,
    ) -> None:
        # the semaphore keeps this process's waiters off the lock files when it is at its cap
        self.semaphore = asyncio.Semaphore(concurrency)
        digest = hashlib.sha256(account.encode("utf-8")).hexdigest()[:16]
        self.slots = SharedSlots(Path(shared_dir) / SLOTS_DIR / digest, concurrency)
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
        """Hold one of the account's ``concurrency`` slots once the per-minute budgets allow."""
        async with self.semaphore:
            slot = await self.slots.acquire()
            try:
                if self.rpm is not None:
                    await self.rpm.acquire(1)
                if self.tpm is not None:
                    await self.tpm.acquire(max(tokens, 1))
                yield
            finally:
                self.slots.release(slot)

    def close(self) -> None:
        self.slots.close()
        for bucket in (self.rpm, self.tpm):
            if bucket is not None:
                bucket.close()
