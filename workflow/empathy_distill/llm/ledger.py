"""The spend record of the LLM layer: the ledger's running total, per-call spend stats and
the cost-report CSV.

The ledger the budget cap reads is the cache database: answers (``responses.cost_usd``),
fine-tuning jobs and other charges. Its total is kept by triggers in one row
(``spend_total``), because summing every answer on each reservation took 8 ms at 20,000
answers and 33 ms at 100,000 (with the database's write lock held). The cost-report CSV is
shared by every job of a run (appends under an exclusive lock).
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Tables whose ``cost_usd`` is spend, and the running total the triggers keep of them.
SPENT_TABLES = ("responses", "finetune_jobs", "charges")
SPEND_TOTAL_DDL = [
    "CREATE TABLE IF NOT EXISTS spend_total (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " usd REAL NOT NULL)",
    *(
        ddl
        for table in SPENT_TABLES
        for ddl in (
            f"CREATE TRIGGER IF NOT EXISTS spend_{table}_ins AFTER INSERT ON {table} BEGIN"
            " UPDATE spend_total SET usd = usd + NEW.cost_usd WHERE id = 1; END",
            f"CREATE TRIGGER IF NOT EXISTS spend_{table}_upd AFTER UPDATE OF cost_usd ON {table}"
            " BEGIN UPDATE spend_total SET usd = usd + NEW.cost_usd - OLD.cost_usd"
            " WHERE id = 1; END",
            f"CREATE TRIGGER IF NOT EXISTS spend_{table}_del AFTER DELETE ON {table} BEGIN"
            " UPDATE spend_total SET usd = usd - OLD.cost_usd WHERE id = 1; END",
        )
    ),
]


def set_up_spend_total(db: sqlite3.Connection) -> None:
    """Create the running total and its triggers, counting what is already there; run inside
    the write transaction that opens the cache (so no insert can fall between the two)."""
    for ddl in SPEND_TOTAL_DDL:
        db.execute(ddl)
    if db.execute("SELECT 1 FROM spend_total").fetchone() is None:
        total = " + ".join(f"(SELECT COALESCE(SUM(cost_usd), 0) FROM {t})" for t in SPENT_TABLES)
        db.execute(f"INSERT INTO spend_total (id, usd) SELECT 1, {total}")


def spent_in(db: sqlite3.Connection) -> float:
    """The ledger's recorded spend, read on ``db`` (inside the caller's transaction)."""
    (total,) = db.execute("SELECT usd FROM spend_total WHERE id = 1").fetchone()
    return float(total)


COST_REPORT_COLUMNS = (
    "timestamp",
    "desc",
    "backend",
    "model",
    "mode",
    "requests",
    "unique",
    "cached",
    "answered",
    "failed",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)


@dataclass
class RunStats:
    answered: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: RunStats) -> None:
        for name in ("answered", "failed", "input_tokens", "output_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd


class CostReporting:
    """The cost-report rows of an ``LLMClient`` (mixed in; uses its endpoint attributes)."""

    backend_name: str
    model: str
    mode: str
    cost_report: Path | None
    _desc: str

    # Two kinds of rows share the CSV: a spend row per committed group of new answers
    # (``answered``, tokens, ``cost_usd``; request counts empty), written as the money is spent,
    # and a summary row per ``complete`` call (request counts; spend columns 0, already logged).
    # Summing ``cost_usd`` therefore gives what was paid, even after a SIGKILL.
    def _row(self, desc: str, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(COST_REPORT_COLUMNS, "")
        row.update(
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            desc=desc,
            backend=self.backend_name,
            model=self.model,
            mode=self.mode,
        )
        row.update(values)
        return row

    def _append_row(self, row: dict[str, Any]) -> None:
        if self.cost_report is not None:
            append_cost_row(self.cost_report, row)

    def _report_spend(self, group: RunStats) -> None:
        self._append_row(
            self._row(
                self._desc,
                answered=group.answered,
                failed=0,
                input_tokens=group.input_tokens,
                output_tokens=group.output_tokens,
                cost_usd=f"{group.cost_usd:.10f}",
            )
        )

    def _report(self, desc: str, n: int, unique: int, cached: int, stats: RunStats) -> None:
        self._append_row(
            self._row(
                desc,
                requests=n,
                unique=unique,
                cached=cached,
                answered=0,
                failed=stats.failed,
                input_tokens=0,
                output_tokens=0,
                cost_usd=f"{0.0:.6f}",
            )
        )


def append_cost_row(path: str | Path, row: dict[str, Any]) -> None:
    """Append one CSV line (``COST_REPORT_COLUMNS``) under an exclusive lock (parallel jobs
    share one report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COST_REPORT_COLUMNS)
    with open(path, "a", newline="", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if os.fstat(handle.fileno()).st_size == 0:
            writer.writeheader()
        writer.writerow(row)
        handle.write(buffer.getvalue())
