"""One budget for every job and process that shares a cache: ``llm.budget_usd`` is a cap.

WHY: a check made once before a job starts cannot see the jobs running beside it, nor answers
longer than projected; two jobs at a time billed 1.42x the budget that way. So before each
request (or batch, or fine-tuning job) is sent, its *worst case* (``worst_case_tokens``) is
reserved in the cache database, inside one write transaction (BEGIN IMMEDIATE) that reads
spend + reservations and adds the new row only if the sum stays under the cap. Every process on
the machine sees every other's spend and reservations. When the answer arrives, the
reservation is deleted in the transaction that stores the answer with its real cost
(``ResponseCache.put_many(release=...)``); a request that fails releases it.

Stale reservations (a process killed while requests were in flight) are reclaimed by the next
reservation: a row whose ``host`` is this machine and whose ``pid`` is no longer running (or is
running a different process: ``pid_start``, the process start time from /proc) is deleted,
unless it holds an open batch or a created, unfinished fine-tuning job (``batch_tag``), which
the provider will still bill: those are released when their results are read (a rerun resumes
the batch), or after ``HOLDER_TTL_S`` if no run ever reads them. A row of
another host is never judged alive or dead (its pids mean nothing here); it is released after
``FOREIGN_RESERVATION_TTL_S`` (SQLite's WAL needs all its processes on one host, so such rows
come only from a cache directory copied from another machine).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .cache import OPEN_STATES, ResponseCache
from .capabilities import billed_output_cap
from .errors import BudgetExceededError
from .ledger import spent_in
from .pricing import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, Price
from .request import ChatRequest

log = logging.getLogger("empathy_distill.llm")
#: Fine-tuning job steps after which nothing more is billed (``llm/finetune.py``).
FINETUNE_ENDED = ("succeeded", "failed", "cancelled")
#: Longest wait between two tries of a reservation that waits on others in flight.
MAX_WAIT_S = 1.0
#: How often a process looks for stale reservations while everything fits (a check reads
#: /proc for every other process holding one).
RECLAIM_EVERY_S = 1.0
#: Other hosts' reservations are released after this long (longer than any batch window).
FOREIGN_RESERVATION_TTL_S = 72 * 3600.0
#: A dead process's open batch or fine-tuning job holds its reservation this long at most
#: (batches end within 24 h, OpenAI's completion window, or 48 h, Gemini's; the rerun that
#: reads it releases it earlier).
HOLDER_TTL_S = 72 * 3600.0


def max_request_tokens(request: ChatRequest) -> int:
    """An upper bound of the prompt's tokens: its UTF-8 bytes (a byte-level BPE token holds at
    least one byte) plus the chat overhead of ``pricing.approx_request_tokens``."""
    return (
        sum(len(m.content.encode("utf-8")) + TOKENS_PER_MESSAGE for m in request.messages)
        + TOKENS_PER_REPLY
    )


def worst_case_output_tokens(request: ChatRequest, default: int, thinking: int = 0) -> int:
    """The most completion tokens the request can be billed (``capabilities.billed_output_cap``:
    its own largest cap, else ``default``, the endpoint's ``max_new_tokens``, plus ``thinking``,
    the endpoint's budget). A thinking budget the request sets itself adds nothing: Gemini
    counts thinking inside ``maxOutputTokens``, and the cap sent is this sum either way."""
    return billed_output_cap(request.sampling, default, thinking)


def worst_case_cost(
    request: ChatRequest, price: Price, default_output_tokens: int, thinking: int = 0
) -> float:
    return price.cost(
        max_request_tokens(request),
        worst_case_output_tokens(request, default_output_tokens, thinking),
    )


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (field 22 of /proc/PID/stat), telling a reused pid apart;
    None where /proc is absent or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return start is None or process_start(pid) in (None, start)


class SharedBudget:
    """Reservations against ``limit_usd`` kept in the cache database (see module docstring).

    With no limit, reservations are still recorded, so that capped jobs beside it see them.
    """

    def __init__(self, cache: ResponseCache, limit_usd: float | None) -> None:
        self.cache = cache
        self.limit = limit_usd
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_start = process_start(self.pid)
        self._reclaimed_at = float("-inf")

    def _reclaim(self, db: Any, force: bool = False) -> None:
        """Delete stale reservations (module docstring); at most every ``RECLAIM_EVERY_S``
        unless ``force``d (a reservation that does not fit looks again at once)."""
        now = time.time()
        if not force and now - self._reclaimed_at < RECLAIM_EVERY_S:
            return
        self._reclaimed_at = now
        rows = db.execute(
            "SELECT id, host, pid, pid_start, batch_tag, created_at FROM reservations"
            " WHERE NOT (host=? AND pid=?)",  # this process's own rows are live
            (self.host, self.pid),
        ).fetchall()
        alive: dict[tuple[int, str | None], bool] = {}
        stale = []
        for rid, host, pid, start, holder, created in rows:
            if host != self.host:
                if now - created > FOREIGN_RESERVATION_TTL_S:
                    stale.append(rid)
                continue
            if (pid, start) not in alive:
                alive[pid, start] = pid_alive(pid, start)
            if alive[pid, start]:
                continue
            if holder and _holder_open(db, holder) and now - created <= HOLDER_TTL_S:
                continue
            stale.append(rid)
        if stale:
            log.info("released %d stale budget reservation(s) of ended processes", len(stale))
            db.executemany("DELETE FROM reservations WHERE id=?", [(r,) for r in stale])

    def state(self) -> tuple[float, float]:
        """(recorded spend, live reservations), stale reservations reclaimed first."""
        with self.cache.transaction() as db:
            self._reclaim(db, force=True)
            return spent_in(db), _reserved_in(db)

    def left(self) -> float | None:
        if self.limit is None:
            return None
        spent, reserved = self.state()
        return self.limit - spent - reserved

    def refusal(
        self, amount: float, what: str, spent: float, reserved: float, kind: str = "worst case"
    ) -> str:
        """The message of a BudgetExceededError: the cap, what is left and why."""
        assert self.limit is not None
        left = self.limit - spent - reserved
        return (
            f"budget cap llm.budget_usd = ${self.limit:.4f} would be exceeded by {what}:"
            f" {kind} ${amount:.4f}, but only ${max(0.0, left):.4f} is left (${spent:.4f}"
            f" already spent, recorded in the cache, and ${reserved:.4f} reserved by requests in"
            " flight in this and other jobs); nothing more was sent, answers bought so far are"
            " cached"
        )

    def check(self, amount: float, what: str) -> None:
        """Raise BudgetExceededError if ``amount`` does not fit now (reserves nothing)."""
        if self.limit is None:
            return
        spent, reserved = self.state()
        if spent + reserved + amount > self.limit + 1e-12:
            raise BudgetExceededError(self.refusal(amount, what, spent, reserved, "projected"))

    def try_reserve(self, amount: float, what: str, holder: str | None = None) -> str | None:
        """Reserve ``amount``: its id; None when it fits only once reservations in flight
        settle; BudgetExceededError when it cannot fit even then (the spend is already too
        high: spend only grows).

        ``holder`` (a batch tag, ``finetune:<key>``) keeps the reservation past this process's
        end until that holder is closed.
        """
        rid = holder or f"rt-{uuid.uuid4().hex}"
        with self.cache.transaction() as db:
            self._reclaim(db)
            db.execute("DELETE FROM reservations WHERE id=?", (rid,))  # a resumed holder's
            if self.limit is not None:
                spent, reserved = spent_in(db), _reserved_in(db)
                if spent + reserved + amount > self.limit + 1e-12:
                    self._reclaim(db, force=True)
                    reserved = _reserved_in(db)
                if spent + amount > self.limit + 1e-12:
                    raise BudgetExceededError(self.refusal(amount, what, spent, reserved))
                if spent + reserved + amount > self.limit + 1e-12:
                    return None
            db.execute(
                "INSERT INTO reservations (id, amount_usd, what, host, pid, pid_start,"
                " batch_tag, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (rid, amount, what[:200], self.host, self.pid, self.pid_start, holder, time.time()),
            )
        return rid

    def reserve(self, amount: float, what: str, holder: str | None = None) -> str:
        """``try_reserve`` that refuses at once what does not fit now (no waiting)."""
        rid = self.try_reserve(amount, what, holder)
        if rid is None:
            spent, reserved = self.state()
            raise BudgetExceededError(self.refusal(amount, what, spent, reserved))
        return rid

    async def areserve(
        self,
        amount: float,
        what: str,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> str:
        """``try_reserve``, waiting while only reservations in flight (of this or other jobs)
        stand in the way: they become spend or are released. Never waits on a holder this
        coroutine itself must settle (batches use ``try_reserve``)."""
        delay = 0.01
        while (rid := self.try_reserve(amount, what)) is None:
            await sleep(delay)
            delay = min(2 * delay, MAX_WAIT_S)
        return rid

    def release(self, *ids: str) -> None:
        with self.cache.transaction() as db:
            db.executemany("DELETE FROM reservations WHERE id=?", [(r,) for r in ids])


def _reserved_in(db: Any) -> float:
    (total,) = db.execute("SELECT COALESCE(SUM(amount_usd), 0) FROM reservations").fetchone()
    return float(total)


def _holder_open(db: Any, holder: str) -> bool:
    """Whether the batch or fine-tuning job holding a reservation may still be billed."""
    if holder.startswith("finetune:"):
        row = db.execute(
            "SELECT state FROM finetune_jobs WHERE key=?", (holder[len("finetune:") :],)
        ).fetchone()
        state = json.loads(row[0]) if row is not None else {}
        created = bool(state.get("job_id")) or state.get("step") == "creating"
        return created and state.get("step") not in FINETUNE_ENDED
    marks = ",".join("?" * len(OPEN_STATES))
    row = db.execute(
        f"SELECT 1 FROM submissions WHERE tag=? AND status IN ({marks})", (holder, *OPEN_STATES)
    ).fetchone()
    return row is not None
