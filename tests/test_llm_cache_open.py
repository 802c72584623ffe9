"""Several Snakemake jobs start at once and open the same fresh cache file.

WHY: CI saw ``sqlite3.OperationalError: database is locked`` from ``PRAGMA journal_mode=WAL``
when two processes opened one new cache together: SQLite answers a journal-mode change that
races another connection with SQLITE_BUSY without calling the busy handler (sqlite.org/wal.html,
"Activating And Configuring WAL Mode"; the busy handler is not invoked for that lock). A job
that dies there loses nothing, but it fails a run for no reason.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.request import Answer, ChatRequest, Message

PROCESSES = 8
#: Without the retry (forked processes) 40 rounds failed 5 runs of 5, 20 rounds 2 of 6 (2026-12-07).
ROUNDS = 40


def _open_and_write(cache_dir: str, name: str, barrier, errors) -> None:
    try:
        barrier.wait(timeout=60)
        cache = ResponseCache(cache_dir)
        request = ChatRequest(model="m", messages=(Message("user", name),))
        cache.put(
            request, Answer(text=name, model="m", usage={}), cost_usd=0.0, backend="b", mode="m"
        )
        cache.close()
    except Exception as error:  # reported to the parent
        errors.put(f"{name}: {type(error).__name__}: {error}")


def test_processes_opening_one_new_cache_together_all_succeed(tmp_path):
    # fork, not spawn: a spawned child imports the package again (160 imports took 63 s of a
    # CI run); forked children share nothing SQLite-related either, since the parent opens no
    # connection before they start, and they reach the barrier together sooner.
    context = mp.get_context("fork")
    errors = context.Queue()
    for round_ in range(ROUNDS):
        cache_dir = tmp_path / f"round{round_}"
        barrier = context.Barrier(PROCESSES)
        workers = [
            context.Process(target=_open_and_write, args=(str(cache_dir), f"p{i}", barrier, errors))
            for i in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        failures = []
        while not errors.empty():
            failures.append(errors.get())
        assert not failures, failures
        db = sqlite3.connect(cache_dir / "llm_cache.sqlite3")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == PROCESSES
        db.close()
