"""The spend record of the LLM layer: per-call spend stats and the cost-report CSV.

The cost-report CSV is shared by every job of a run (appends under an exclusive lock); the
ledger the budget cap reads is the cache database (``ResponseCache.spent_usd``, ``budget.py``).
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
