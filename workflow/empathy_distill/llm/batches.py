"""The cache's submitted batches: list them, and cancel those no request of a config needs.

WHY: a run stopped to change a prompt leaves its batches running, and the provider bills them
when they finish. The cache records every batch (with the keys it carries) before it is created
(``cache.py``), so the batches can be listed without asking any provider, and the open ones
whose requests the current config would never send can be cancelled through the provider's SDK
(openai ``batches.cancel``, google-genai ``batches.cancel``).

Which open batch is *unneeded* (cancelled by ``--cancel-unneeded``):

* its (backend, model) is called by no endpoint of the config, or
* only the teacher calls that (backend, model) and none of its request keys is among the
  teacher requests the config sends (``cost.teacher_requests``, exact, from the split tables).

A batch whose model a judge or scorer also calls is kept: judge and scorer requests embed the
students' answers, which do not exist before the students are trained, so they cannot be
enumerated; keeping such a batch can cost money, cancelling a needed one would cost more.

Results are read into the cache in the same polling pass in which a batch is seen finished
(``client._run_batch``), so the provider's 30-day file expiry loses nothing of a run that is
still polling; ``batches`` lists a finished batch not yet read as ``submitted``: rerun its job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .backends import make_backend
from .cache import OPEN_STATES, ResponseCache
from .capabilities import DEFAULT_MAX_NEW_TOKENS
from .errors import LLMError, PermanentError, TransientError
from .pricing import FREE_BACKENDS, PriceTable, approx_request_tokens

COLUMNS = ("backend", "batch_id", "model", "state", "requests", "age_h", "est_cost_usd")


@dataclass(frozen=True)
class BatchRow:
    tag: str
    backend: str
    model: str
    batch_id: str | None
    state: str
    requests: int
    age_h: float
    est_cost_usd: float | None

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


def list_batches(
    cache: ResponseCache,
    prices: PriceTable | None = None,
    now: float | None = None,
    output_tokens: dict[tuple[str, str], int] | None = None,
) -> list[BatchRow]:
    """Every batch the cache records; est. cost = approximate input tokens plus the worst-case
    output of its (backend, model) per request (``output_tokens``, from the config's endpoints;
    256 when no endpoint names it), at the model's batch price (None when unpriced)."""
    now = time.time() if now is None else now
    output_tokens = output_tokens or {}
    rows = []
    for tag, backend, model, batch_id, status, created, count in cache.submission_rows():
        cost = None
        if prices is not None:
            try:
                price = prices.price(backend, model, "batch")
                out = output_tokens.get((backend, model), DEFAULT_MAX_NEW_TOKENS)
                cost = sum(
                    price.cost(approx_request_tokens(r), out)
                    for r in cache.submission_requests(tag).values()
                )
            except LLMError:
                cost = None
        rows.append(
            BatchRow(tag, backend, model, batch_id, status, count, (now - created) / 3600, cost)
        )
    return rows


def unneeded(
    rows: Iterable[BatchRow],
    endpoints: dict[str, dict[str, Any]],
    teacher_keys: set[str] | None,
    cache: ResponseCache,
) -> list[tuple[BatchRow, str]]:
    """Open batches no request of the config needs, each with the reason (module docstring)."""
    users: dict[tuple[str, str], set[str]] = {}
    for where, endpoint in endpoints.items():
        key = (endpoint.get("backend", ""), endpoint.get("model", ""))
        users.setdefault(key, set()).add(where.split(".")[0])
    found = []
    for row in rows:
        if not row.open or row.backend in FREE_BACKENDS:
            continue
        roles = users.get((row.backend, row.model), set())
        if not roles:
            found.append((row, f"no endpoint of the config calls {row.backend}/{row.model}"))
        elif roles == {"teacher"} and teacher_keys is not None:
            keys = set(cache.submission_requests(row.tag))
            if not keys & teacher_keys:
                found.append((row, "none of its requests is a teacher request of the config"))
    return found


async def _cancel(endpoint: dict[str, Any], batch_ids: list[str]) -> dict[str, str]:
    backend = make_backend(endpoint)
    outcome = {}
    try:
        for batch_id in batch_ids:
            try:
                await backend.cancel_batch(batch_id)
                outcome[batch_id] = "cancelled"
            except (TransientError, PermanentError) as exc:
                outcome[batch_id] = f"not cancelled: {exc}"
    finally:
        await backend.aclose()
    return outcome


def cancel(
    cache: ResponseCache,
    targets: list[BatchRow],
    endpoint_of: dict[tuple[str, str], dict[str, Any]],
) -> dict[str, str]:
    """Cancel ``targets`` through their provider; a cancelled submission is closed in the cache
    (its keys are no longer resumed). batch id -> outcome."""
    outcome: dict[str, str] = {}
    groups: dict[tuple[str, str], list[BatchRow]] = {}
    for row in targets:
        if row.batch_id is None:  # recorded, never created: nothing runs at the provider
            cache.close_submission(row.tag, "never_created")
            outcome[row.tag] = "closed (never created)"
            continue
        groups.setdefault((row.backend, row.model), []).append(row)
    for (backend, model), group in groups.items():
        endpoint = endpoint_of.get((backend, model), {"backend": backend, "model": model})
        done = asyncio.run(_cancel(endpoint, [r.batch_id for r in group if r.batch_id]))
        for row in group:
            assert row.batch_id is not None
            outcome[row.batch_id] = done[row.batch_id]
            if done[row.batch_id] == "cancelled":
                cache.close_submission(row.tag, "cancelled")
    return outcome
