"""Model shutdown dates (``resources/model_lifecycle.yaml``), checked before a run starts.

WHY: a grid runs for days; a model shut down halfway leaves a half-judged grid and batches that
fail after being paid for. Every model the grid names is refused at start-up when its provider
shuts it down before ``today + llm.expected_run_days``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import LLMError
from .pricing import fine_tuned_base

TABLE = Path(__file__).resolve().parents[3] / "resources" / "model_lifecycle.yaml"


@dataclass(frozen=True)
class Shutdown:
    model: str
    date: datetime.date
    replacement: str
    source: str
    read: str


def load(path: str | Path = TABLE) -> dict[str, Shutdown]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise LLMError(f"model lifecycle table not found: {path}") from exc
    table = {}
    for model, row in (raw.get("shutdowns") or {}).items():
        row = row or {}
        when = row.get("shutdown")
        if not isinstance(when, datetime.date) or not row.get("source"):
            raise LLMError(
                f"{path}: shutdowns.{model} needs 'shutdown: YYYY-MM-DD' and its 'source' URL"
            )
        table[str(model)] = Shutdown(
            str(model),
            when,
            str(row.get("replacement") or "none named"),
            str(row["source"]),
            str(row.get("read") or "?"),
        )
    return table


def today() -> datetime.date:
    """The machine's date (UTC); tests replace this function."""
    return datetime.datetime.now(datetime.UTC).date()


def shutdown_problems(
    models: dict[str, str],
    run_days: int,
    on: datetime.date | None = None,
    path: str | Path = TABLE,
) -> list[str]:
    """``where.model`` -> a message for each model shut down before ``on + run_days``."""
    table = load(path)
    on = on or today()
    horizon = on + datetime.timedelta(days=run_days)
    problems = []
    for where, model in models.items():
        row = table.get(model) or table.get(fine_tuned_base(model) or "")
        if row is None or row.date > horizon:
            continue
        when = "was shut down" if row.date <= on else "shuts down"
        problems.append(
            f"{where}: {model!r} {when} on {row.date.isoformat()}"
            f" (within llm.expected_run_days = {run_days} of {on.isoformat()}); its provider"
            f" names {row.replacement} as the replacement ({row.source}, read {row.read}). Change"
            " the model (docs/models.md)"
        )
    return problems
