"""The LLM client every stage uses: cache first, then real time, Batch API or a local model.

Guarantees: every request is answered once across calls and processes (SQLite cache
keyed by the request hash); a killed run resumes from the cache and polls the batches it had
submitted; each request (or batch) reserves its worst case against ``llm.budget_usd`` in the
cache database before it is sent, so the cap holds across every job and process (budget.py);
an answer that never arrives fails the call with an LLMError naming the request.

Split by concern: real-time and local dispatch in ``realtime.py``, the Batch API in
``batching.py``, the budget in ``budget.py``, spend stats and the cost report in ``ledger.py``,
the progress bar in ``progress.py``; their public names are re-exported here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import settings
from .backends import make_backend
from .backends.base import Backend
from .batching import MAX_BATCH_BACKOFF_S, BatchDispatch
from .budget import SharedBudget
from .cache import ResponseCache
from .capabilities import output_limits, projected_output_tokens
from .endpoint import normalize_endpoint
from .errors import LLMError
from .ledger import COST_REPORT_COLUMNS, CostReporting, RunStats, append_cost_row
from .pricing import FREE_BACKENDS, Price, PriceTable, approx_request_tokens
from .progress import Progress, run_sync
from .realtime import RealtimeDispatch, rate_limit_account
from .request import Answer, ChatRequest, ChatResponse
from .retry import with_retries

log = logging.getLogger("empathy_distill.llm")

__all__ = [
    "COST_REPORT_COLUMNS",
    "MAX_BATCH_BACKOFF_S",
    "LLMClient",
    "Progress",
    "RunStats",
    "SharedBudget",
    "append_cost_row",
    "make_client",
    "rate_limit_account",
    "run_sync",
]


class LLMClient(RealtimeDispatch, BatchDispatch, CostReporting):
    """Answers ChatRequests for one endpoint (``teacher`` or ``judges.<name>`` of the config)."""

    def __init__(
        self,
        endpoint: dict[str, Any],
        cache: ResponseCache,
        price: Price,
        budget_usd: float | None = None,
        cost_report: str | Path | None = None,
        *,
        show_progress: bool = True,
        backend: Backend | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.backend_name = endpoint["backend"]
        self.model = endpoint["model"]
        self.mode = endpoint["mode"]
        self.cache = cache
        self.price = price
        #: The endpoint's thinking budget: billed as output on top of every answer's cap.
        self.thinking = int(output_limits(endpoint).thinking_budget or 0)
        self.budget_usd = budget_usd
        self.cost_report = Path(cost_report) if cost_report else None
        self.show_progress = show_progress
        self._backend = backend
        self.sleep = asyncio.sleep
        self._desc = "llm"  # the running call's desc, for its spend rows

    # Public API -----------------------------------------------------------------------------
    def complete(
        self,
        requests: Iterable[ChatRequest],
        desc: str = "llm",
        expected_output_tokens: int | None = None,
    ) -> list[ChatResponse]:
        """Answers in input order; duplicates answered once; LLMError if any stays missing.

        ``expected_output_tokens`` (default: the endpoint's ``max_new_tokens``) only feeds the
        budget projection made before anything is sent. Each request (or batch) then reserves
        its worst case against the shared cap (``budget.py``): once one does not fit, nothing
        more is sent, what was bought is kept, and BudgetExceededError says what is left.
        """
        requests = list(requests)
        self._desc = desc
        for request in requests:
            if request.model != self.model:
                raise LLMError(
                    f"{request.describe()} asks for model {request.model!r} but this client"
                    f" talks to {self.model!r} ({self.backend_name})"
                )
        unique = {r.key: r for r in reversed(requests)}
        unique = {k: unique[k] for k in dict.fromkeys(r.key for r in requests)}
        before = self.cache.get_many(unique)
        pending = {k: r for k, r in unique.items() if k not in before}
        if pending and settings.current().cache_only:
            first = next(iter(pending.values()))
            raise LLMError(
                f"llm.cache_only: {len(pending)} of {len(unique)} request(s) of {desc!r} are not"
                f" in the cache {self.cache.dir} (first: {first.describe()}); a cache-only run"
                " sends nothing: use the cache the results were made with, or turn cache_only"
                " off"
            )
        # the cap every request is sent with; the thinking budget comes on top (self.thinking)
        max_out = output_limits(self.endpoint).max_new_tokens
        out_tokens = projected_output_tokens(self.endpoint, expected_output_tokens)
        stats = RunStats()
        failures: dict[str, str] = {}
        try:
            if pending:
                budget = SharedBudget(self.cache, self.budget_usd)
                projected = sum(
                    self.price.cost(approx_request_tokens(r), out_tokens) for r in pending.values()
                )
                budget.check(projected, f"{len(pending)} new request(s) of {desc!r}")
                progress = Progress(desc, len(unique), len(before), self.show_progress)
                try:
                    run_sync(
                        self._run(pending, budget, out_tokens, max_out, stats, failures, progress)
                    )
                finally:
                    progress.close()
        finally:
            self._report(desc, len(requests), len(unique), len(before), stats)
        final = self.cache.get_many(unique)
        refused = sum(final[k].refusal is not None for k in unique if k in final)
        if refused:
            log.warning(
                "%s: %d of %d request(s) refused by %s/%s (safety block; recorded, not retried)",
                desc,
                refused,
                len(unique),
                self.backend_name,
                self.model,
            )
        missing = [unique[k] for k in unique if k not in final]
        if missing:
            lines = "\n  ".join(
                f"{r.describe()}: {failures.get(r.key, 'no answer')}" for r in missing[:10]
            )
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise LLMError(
                f"{len(missing)} of {len(unique)} request(s) of {desc!r} got no answer from"
                f" {self.backend_name}/{self.model} after {self.endpoint['max_retries']}"
                f" retries:\n  {lines}{more}\nAnswers received so far are cached; rerun to"
                " resume."
            )
        return [
            ChatResponse(
                key=r.key,
                text=final[r.key].text,
                model=final[r.key].model,
                usage=dict(final[r.key].usage),
                cached=r.key in before,
                refusal=final[r.key].refusal,
            )
            for r in requests
        ]

    # Dispatch -------------------------------------------------------------------------------
    async def _run(
        self,
        pending: dict[str, ChatRequest],
        budget: SharedBudget,
        out_tokens: int,
        max_out: int,
        stats: RunStats,
        failures: dict[str, str],
        progress: Progress,
    ) -> None:
        backend = self._backend
        owned = False
        if backend is None:
            backend = make_backend(self.endpoint)
            if backend.local:
                self._backend = backend  # keep the loaded model for the next call
            else:
                owned = True  # API clients hold connections bound to this event loop
        try:
            if backend.local:
                await self._run_local(backend, pending, stats, progress)
            elif self.mode == "batch" and backend.supports_batch:
                await self._run_batch(
                    backend, pending, budget, out_tokens, max_out, stats, failures, progress
                )
            else:
                await self._run_realtime(
                    backend, pending, budget, out_tokens, max_out, stats, failures, progress
                )
        finally:
            if owned:
                await backend.aclose()

    def _store_many(
        self,
        items: list[tuple[ChatRequest, Answer]],
        stats: RunStats,
        source: str,
        release: Iterable[str] = (),
    ) -> list[float]:
        """Commit answers in one transaction, then log their spend; their costs, in order.

        The transaction also drops the budget reservations ``release``: the real charge
        replaces the worst case at once. The spend row is appended right after the commit, not
        at the end of the call: a run killed with SIGKILL (no ``finally``) must still leave
        every paid answer in the report (an answer another process stored first was paid too:
        its cost is in the row, not its count).
        """
        rows = []
        for request, answer in items:
            if not answer.model:
                answer = dataclasses.replace(answer, model=request.model)
            cost = self.price.cost(answer.usage["input_tokens"], answer.usage["output_tokens"])
            rows.append((request, answer, cost))
        new = self.cache.put_many(
            rows, backend=self.backend_name, mode=self.mode, source=source, release=release
        )
        group = RunStats()
        for (_, answer, cost), is_new in zip(rows, new, strict=True):
            if is_new:
                group.answered += 1
                group.input_tokens += answer.usage["input_tokens"]
                group.output_tokens += answer.usage["output_tokens"]
            group.cost_usd += cost
        stats.add(group)
        if group.answered or group.cost_usd:
            self._report_spend(group)
        return [cost for _, _, cost in rows]

    async def _retry(self, call: Any) -> Any:
        return await with_retries(call, int(self.endpoint["max_retries"]), sleep=self.sleep)


def make_client(
    endpoint_cfg: dict[str, Any],
    cache_dir: str | Path = "resources/cache",
    price_table: str | Path = "resources/prices.yaml",
    budget_usd: float | None = None,
    cost_report: str | Path | None = None,
    *,
    show_progress: bool = True,
) -> LLMClient:
    """A client for one endpoint config; a paid model missing from the price table fails here."""
    endpoint = normalize_endpoint(endpoint_cfg)
    mode = endpoint["mode"]
    if endpoint["backend"] in FREE_BACKENDS or settings.current().cache_only:
        price = Price(0.0, 0.0)  # a cache-only client sends nothing, so nothing is billed
    else:
        price = PriceTable.load(price_table).price(endpoint["backend"], endpoint["model"], mode)
    return LLMClient(
        endpoint,
        ResponseCache(cache_dir),
        price,
        budget_usd,
        cost_report,
        show_progress=show_progress,
    )
