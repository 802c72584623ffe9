"""Persistent SQLite cache of every answer, every submitted batch and every fine-tuning job.

WHY: API calls cost money and batches take hours. Each answer is committed the moment it
arrives (answers arriving in the same event-loop tick share a transaction, see commit.py), and
each batch is recorded (with the keys it carries) *before* it is created, so a run killed at
any point (SIGKILL included) resumes by reusing answers and polling the same batches
instead of paying again. A fine-tuning job's steps (upload, creation, polling) are recorded
the same way, before and after each (``llm/finetune.py``). WAL mode and a busy timeout let
several processes share one file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .ledger import set_up_spend_total, spent_in
from .request import Answer, ChatRequest, canonical_json

CACHE_FILE = "llm_cache.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    usage TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    backend TEXT NOT NULL,
    mode TEXT NOT NULL,
    source TEXT,
    request TEXT NOT NULL,
    created_at REAL NOT NULL,
    refusal TEXT
);
CREATE TABLE IF NOT EXISTS submissions (
    tag TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    batch_id TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS submission_items (
    tag TEXT NOT NULL,
    key TEXT NOT NULL,
    request TEXT NOT NULL,
    PRIMARY KEY (tag, key)
);
CREATE INDEX IF NOT EXISTS submission_items_key ON submission_items (key);
CREATE TABLE IF NOT EXISTS finetune_jobs (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    amount_usd REAL NOT NULL,
    what TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    batch_tag TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    what TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    created_at REAL NOT NULL
);
"""

#: Submission states: ``preparing`` (recorded, batch maybe not created yet), ``submitted``
#: (batch id known), ``closed`` (results read back; its unanswered items were requeued).
OPEN_STATES = ("preparing", "submitted")


@dataclass(frozen=True)
class CachedAnswer:
    key: str
    text: str
    model: str
    usage: dict[str, int]
    cost_usd: float
    #: The provider's reason when it refused (a safety block): a final answer, never re-bought.
    refusal: str | None = None


@dataclass(frozen=True)
class Submission:
    tag: str
    batch_id: str | None
    status: str
    keys: tuple[str, ...]


def _retry_while_locked(step, timeout_s: float) -> None:
    """Run ``step`` again while SQLite says the file is locked, up to ``timeout_s``.

    WHY: several jobs open one new cache file at once, and SQLite answers a journal-mode change
    that meets another connection's lock with SQLITE_BUSY at once instead of waiting in the busy
    handler (https://sqlite.org/wal.html, "Activating And Configuring WAL Mode"). Every step is
    idempotent (``IF NOT EXISTS``, the migration checks its columns), so a retry is safe.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class ResponseCache:
    """One SQLite file under ``cache_dir``; safe to share between threads and processes."""

    def __init__(self, cache_dir: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / CACHE_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        _retry_while_locked(self._set_up, busy_timeout_s)

    def _set_up(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process kill (only an OS crash can lose it).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a cache file written by an older version up to the current columns, in place.

        Caches made before refusals were recorded lack ``responses.refusal``; adding a nullable
        column keeps every answer (they were not refusals). Checked inside a write transaction
        so that two processes opening the same old file do not both add it. Caches made before
        the budget cap have no running spend total: it is created from their sums.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
                if "refusal" not in columns:
                    self._db.execute("ALTER TABLE responses ADD COLUMN refusal TEXT")
                set_up_spend_total(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: the database's write lock is taken at once, so
        what is read inside it cannot change before the commit); rolled back on any error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # Answers -------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, CachedAnswer] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT key, text, model, usage, cost_usd, refusal FROM responses"
                    f" WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, text, model, usage, cost, refusal in rows:
                    found[key] = CachedAnswer(key, text, model, json.loads(usage), cost, refusal)
        return found

    def put(
        self,
        request: ChatRequest,
        answer: Answer,
        *,
        cost_usd: float,
        backend: str,
        mode: str,
        source: str | None = None,
    ) -> bool:
        """Store an answer (the first one wins); True if it was new."""
        return self.put_many(
            [(request, answer, cost_usd)], backend=backend, mode=mode, source=source
        )[0]

    def put_many(
        self,
        items: list[tuple[ChatRequest, Answer, float]],
        *,
        backend: str,
        mode: str,
        source: str | None = None,
        release: Iterable[str] = (),
    ) -> list[bool]:
        """Store (request, answer, cost) items in one transaction; per item, True if new.

        One commit for many answers: the commit, not the insert, is what costs (see commit.py).
        The budget reservations ``release`` (ids, ``llm/budget.py``) are dropped in the same
        transaction, so the real charge replaces the worst case atomically. An answer already
        stored (another process bought the same request at the same time) was paid all the
        same: its cost goes to ``charges`` so that the ledger still equals the bill.
        """
        now = time.time()
        sql = (
            "INSERT OR IGNORE INTO responses (key, model, text, usage, cost_usd, backend, mode,"
            " source, request, created_at, refusal) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
        )
        new: list[bool] = []
        with self.transaction() as db:
            for request, answer, cost_usd in items:
                cursor = db.execute(
                    sql,
                    (
                        request.key,
                        answer.model,
                        answer.text,
                        canonical_json(answer.usage),
                        cost_usd,
                        backend,
                        mode,
                        source,
                        canonical_json(request.payload()),
                        now,
                        answer.refusal,
                    ),
                )
                new.append(cursor.rowcount == 1)
                if cursor.rowcount != 1 and cost_usd and not self._same_batch(db, request, source):
                    db.execute(
                        "INSERT INTO charges (what, cost_usd, created_at) VALUES (?,?,?)",
                        (f"second answer to {request.key[:16]} ({source})", cost_usd, now),
                    )
            db.executemany("DELETE FROM reservations WHERE id=?", [(r,) for r in release])
        return new

    @staticmethod
    def _same_batch(db: sqlite3.Connection, request: ChatRequest, source: str | None) -> bool:
        """Whether the stored answer came from the same batch (a batch read again after a
        kill: billed once, so not charged again)."""
        if not source or not source.startswith("batch:"):
            return False
        row = db.execute("SELECT source FROM responses WHERE key=?", (request.key,)).fetchone()
        return row is not None and row[0] == source

    def add_charge(self, what: str, cost_usd: float, release: Iterable[str] = ()) -> None:
        """Record spend that is not a stored answer (an embeddings request), releasing its
        reservations in the same transaction."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO charges (what, cost_usd, created_at) VALUES (?,?,?)",
                (what, cost_usd, time.time()),
            )
            db.executemany("DELETE FROM reservations WHERE id=?", [(r,) for r in release])

    def spent_usd(self) -> float:
        """Total recorded API spend of every run sharing this cache (the budget ledger):
        answers, fine-tuning jobs and other charges (embeddings, answers bought twice)."""
        with self._lock:
            return spent_in(self._db)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # Batches -------------------------------------------------------------------------------
    def add_submission(
        self, tag: str, backend: str, model: str, requests: Iterable[ChatRequest]
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO submissions (tag, backend, model, batch_id, status, created_at,"
                    " updated_at) VALUES (?,?,?,NULL,'preparing',?,?)",
                    (tag, backend, model, now, now),
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO submission_items (tag, key, request) VALUES (?,?,?)",
                    [(tag, r.key, canonical_json(r.payload())) for r in requests],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def set_batch_id(self, tag: str, batch_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE submissions SET batch_id=?, status='submitted', updated_at=? WHERE tag=?",
                (batch_id, time.time(), tag),
            )

    def close_submission(self, tag: str, status: str = "closed") -> None:
        """Close a submission and drop its budget reservation (its answers, if any, were
        stored with their real cost before)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE submissions SET status=?, updated_at=? WHERE tag=?",
                (status, time.time(), tag),
            )
            db.execute("DELETE FROM reservations WHERE batch_tag=?", (tag,))

    def open_submissions(self, backend: str, model: str) -> list[Submission]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tag, batch_id, status FROM submissions WHERE backend=? AND model=? AND"
                " status IN ('preparing','submitted') ORDER BY created_at",
                (backend, model),
            ).fetchall()
            subs = []
            for tag, batch_id, status in rows:
                keys = tuple(
                    k
                    for (k,) in self._db.execute(
                        "SELECT key FROM submission_items WHERE tag=? ORDER BY rowid", (tag,)
                    )
                )
                subs.append(Submission(tag, batch_id, status, keys))
        return subs

    def submission_requests(self, tag: str) -> dict[str, ChatRequest]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, request FROM submission_items WHERE tag=?", (tag,)
            ).fetchall()
        return {key: ChatRequest.from_payload(json.loads(req)) for key, req in rows}

    def all_submissions(self) -> list[tuple[str, str | None, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT tag, batch_id, status FROM submissions ORDER BY created_at"
            ).fetchall()

    def submission_rows(self) -> list[tuple[str, str, str, str | None, str, float, int]]:
        """(tag, backend, model, batch_id, status, created_at, requests) of every submission."""
        with self._lock:
            return self._db.execute(
                "SELECT s.tag, s.backend, s.model, s.batch_id, s.status, s.created_at,"
                " (SELECT COUNT(*) FROM submission_items i WHERE i.tag = s.tag)"
                " FROM submissions s ORDER BY s.created_at"
            ).fetchall()

    # Fine-tuning jobs ----------------------------------------------------------------------
    def finetune_state(self, key: str) -> dict | None:
        """The recorded state of fine-tuning job ``key`` (see ``llm/finetune.py``), or None."""
        with self._lock:
            row = self._db.execute("SELECT state FROM finetune_jobs WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save_finetune_state(
        self, key: str, state: dict, cost_usd: float = 0.0, *, release: bool = False
    ) -> None:
        """Record a fine-tuning job's state (one committed write: it survives a kill); with
        ``release``, its budget reservation is dropped in the same transaction (the real cost
        is recorded, or the job ended without one)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO finetune_jobs (key, state, cost_usd, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT(key) DO UPDATE SET state=excluded.state,"
                " cost_usd=excluded.cost_usd, updated_at=excluded.updated_at",
                (key, canonical_json(state), cost_usd, time.time()),
            )
            if release:
                db.execute("DELETE FROM reservations WHERE batch_tag=?", (f"finetune:{key}",))
