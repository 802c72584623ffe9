"""``empathy-distill batches``: the cache's batches, and cancelling the unneeded ones
(``llm/batches.py`` says which and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .core.config import resolve_resource
from .core.prompts import Prompts
from .core.readers import read_table
from .cost import teacher_requests
from .distillation.sets import SOURCE_COLUMNS
from .llm import batches
from .llm.cache import CACHE_FILE, ResponseCache
from .llm.capabilities import worst_case_output_tokens
from .llm.pricing import PriceTable
from .startup import planned_endpoints


def teacher_keys(config: dict[str, Any], splits: dict[str, str | None]) -> set[str] | None:
    """Keys of the teacher requests ``config`` sends, None when the split tables are missing."""
    if not config.get("teacher") or not Path(splits["train"] or "").exists():
        return None
    columns = ["dialog_id", "situation", "speaker_uttr"]
    train = read_table(splits["train"], columns)
    test = read_table(splits["test"], columns)
    human = None
    if config["distillation"]["methods"].get("improve_human"):
        if not Path(splits["improve_human"] or "").exists():
            return None
        human = read_table(splits["improve_human"], SOURCE_COLUMNS)
    prompts = Prompts(resolve_resource(config["prompts"]))
    parts = teacher_requests(config, prompts, train, test, human)
    return {r.key for requests in parts.values() for r in requests}


def run(config: dict[str, Any], cancel_unneeded: bool, splits: dict[str, str | None]) -> int:
    """Print the batch table; with ``cancel_unneeded`` cancel the unneeded open batches.
    Returns how many were cancelled."""
    cache_dir = Path(config["llm"]["cache_dir"])
    if not (cache_dir / CACHE_FILE).exists():
        print(f"no cache at {cache_dir / CACHE_FILE}: no batches")
        return 0
    cache = ResponseCache(cache_dir)
    prices = PriceTable.load(resolve_resource(config["llm"]["price_table"]))
    outputs = {
        (e["backend"], e["model"]): worst_case_output_tokens(e) for e in defined_endpoints(config)
    }
    rows = batches.list_batches(cache, prices, output_tokens=outputs)
    endpoints = planned_endpoints(config)
    found = batches.unneeded(rows, endpoints, teacher_keys(config, splits), cache)
    flagged = {row.tag: reason for row, reason in found}
    table = pd.DataFrame(
        [
            {
                "backend": r.backend,
                "batch_id": r.batch_id or f"({r.tag}, not created)",
                "model": r.model,
                "state": r.state,
                "requests": r.requests,
                "age_h": round(r.age_h, 1),
                "est_cost_usd": None if r.est_cost_usd is None else round(r.est_cost_usd, 4),
                "needed": "no: " + flagged[r.tag] if r.tag in flagged else "",
            }
            for r in rows
        ]
    )
    print(table.to_string(index=False) if len(table) else "the cache records no batches")
    if not cancel_unneeded or not found:
        if found:
            print(f"\n{len(found)} open batch(es) unneeded: --cancel-unneeded cancels them")
        return 0
    endpoint_of = {(e["backend"], e["model"]): e for e in defined_endpoints(config)}
    outcome = batches.cancel(cache, [row for row, _ in found], endpoint_of)
    for batch, result in outcome.items():
        print(f"{batch}: {result}")
    return sum(result.startswith(("cancelled", "closed")) for result in outcome.values())


def defined_endpoints(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every LLM endpoint the config defines (in the grid or not): where a batch's model is
    called from, with its base_url and key variable, to cancel it."""
    found = [config["teacher"]] if config.get("teacher") else []
    found += list(config.get("judges", {}).values())
    found += list(config.get("scoring", {}).get("scorers", {}).values())
    return [e for e in found if "model" in e and "backend" in e]
