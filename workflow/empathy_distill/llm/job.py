"""The client a job calls the LLM layer with: its spec's endpoint, cache and price table, plus
the runtime part's operational keys and budget (one recipe for teacher, judges and scorers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core import runtime
from ..core.config import resolve_resource
from . import settings
from .client import LLMClient, make_client


def job_client(
    spec: dict[str, Any], run: dict[str, Any], *where: str, cost_report: str | Path | None = None
) -> LLMClient:
    """The client for ``spec`` (``endpoint``, ``cache_dir``, ``price_table``); ``where`` locates
    its operational keys in the runtime part (see :func:`runtime.endpoint`)."""
    settings.configure(run.get("llm"))
    return make_client(
        runtime.endpoint(spec["endpoint"], run, *where),
        cache_dir=spec["cache_dir"],
        price_table=resolve_resource(spec["price_table"]),
        budget_usd=runtime.budget_usd(run),
        cost_report=cost_report,
    )
