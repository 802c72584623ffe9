"""Real-time and local-model dispatch of an ``LLMClient`` (mixed in).

Real time: a few workers pull requests from one queue under the endpoint's concurrency and
per-minute limits; answers are committed in groups (commit.py). Local: chunks of
``batch_size`` with the same sampling parameters, one transaction per chunk.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .backends import api_key_env
from .backends.base import Backend
from .budget import SharedBudget, worst_case_cost
from .commit import GroupCommit
from .errors import BudgetExceededError, PermanentError, TransientError
from .ledger import RunStats
from .limits import RateLimits
from .pricing import approx_request_tokens
from .progress import Progress
from .request import Answer, ChatRequest, canonical_json

log = logging.getLogger("empathy_distill.llm")


def rate_limit_account(endpoint: dict[str, Any]) -> str:
    """Whose per-minute limits a request draws on: the provider counts per key and model.

    The key is named by its variable, never by its value (this string is stored on disk).
    """
    parts = (endpoint["backend"], endpoint.get("base_url") or "", endpoint["model"])
    return "|".join((*parts, api_key_env(endpoint) or ""))


class RealtimeDispatch:
    """``_run_realtime`` and ``_run_local`` of ``LLMClient``."""

    async def _run_realtime(
        self,
        backend: Backend,
        pending: dict[str, ChatRequest],
        budget: SharedBudget,
        out_tokens: int,
        max_out: int,
        stats: RunStats,
        failures: dict[str, str],
        progress: Progress,
    ) -> None:
        limits = RateLimits(
            int(self.endpoint["concurrency"]),
            self.endpoint.get("requests_per_minute"),
            self.endpoint.get("tokens_per_minute"),
            shared_dir=self.cache.dir,
            account=rate_limit_account(self.endpoint),
        )
        budget_errors: list[BudgetExceededError] = []
        commits: GroupCommit[tuple[ChatRequest, Answer, str], float] = GroupCommit(
            lambda items: self._store_many(
                [(r, a) for r, a, _ in items], stats, "realtime", release=[i for *_, i in items]
            )
        )

        async def one(request: ChatRequest) -> None:
            tokens = approx_request_tokens(request)
            worst = worst_case_cost(request, self.price, max_out, self.thinking)
            reservation: str | None = None

            async def attempt() -> Answer:
                nonlocal reservation
                async with limits.slot(tokens + out_tokens):
                    # Reserved once, in the slot: the worst case is held only while the
                    # request can be in flight (retries keep it: a failed try is not billed).
                    if reservation is None:
                        if budget_errors:
                            raise budget_errors[0]
                        reservation = await budget.areserve(worst, request.describe())
                    return await backend.agenerate(request)

            try:
                answer = await self._retry(attempt)
            except BudgetExceededError as exc:
                if not budget_errors:
                    budget_errors.append(exc)
                failures[request.key] = str(exc)
                progress.fail()
                return
            except (TransientError, PermanentError) as exc:
                if reservation is not None:
                    budget.release(reservation)
                failures[request.key] = f"{type(exc).__name__}: {exc}"
                stats.failed += 1
                progress.fail()
                return
            except BaseException:
                if reservation is not None:
                    budget.release(reservation)
                raise
            assert reservation is not None
            cost = await commits.submit((request, answer, reservation))
            if cost > worst + 1e-12:
                log.warning(
                    "%s cost $%.6f, more than its reserved worst case $%.6f: it sets no output"
                    " limit the provider enforces (max_tokens)",
                    request.describe(40),
                    cost,
                    worst,
                )
            progress.answered()

        # A few workers pull from one queue rather than a task per request: with thousands of
        # tasks, every one of them first ran its setup before the first request went out
        # (0.35 s for 2,000 in the benchmark). Twice the slots, so that requests sleeping out a
        # retry backoff (outside their slot) do not leave slots idle.
        queue = iter(pending.values())

        async def worker() -> None:
            for request in queue:
                await one(request)

        workers = min(len(pending), 2 * int(self.endpoint["concurrency"]))
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            limits.close()
        if budget_errors:
            raise budget_errors[0]

    # Local model ----------------------------------------------------------------------------
    async def _run_local(
        self,
        backend: Backend,
        pending: dict[str, ChatRequest],
        stats: RunStats,
        progress: Progress,
    ) -> None:
        groups: dict[str, list[ChatRequest]] = {}
        for request in pending.values():
            groups.setdefault(canonical_json(request.sampling), []).append(request)
        size = int(self.endpoint.get("batch_size", 8))
        for group in groups.values():
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                answers = await asyncio.to_thread(backend.generate_many, chunk)
                # one transaction and one cost-report row per chunk, not per answer
                self._store_many(list(zip(chunk, answers, strict=True)), stats, "local")
                for _ in chunk:
                    progress.answered()
