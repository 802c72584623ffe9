"""The LLM client every stage uses: cache first, then real time, Batch API or a local model.

Guarantees: every request is answered once across calls and processes (SQLite cache
keyed by the request hash); a killed run resumes from the cache and polls the batches it had
submitted; nothing is sent when the projected spend would pass the budget; an answer that never
arrives fails the call with an LLMError naming the request.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import fcntl
import io
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from .backends import make_backend
from .backends.base import FAILED, TERMINAL, Backend
from .cache import ResponseCache, Submission
from .capabilities import projected_output_tokens
from .commit import GroupCommit
from .endpoint import normalize_endpoint
from .errors import BudgetExceededError, LLMError, PermanentError, TransientError
from .limits import RateLimits
from .pricing import FREE_BACKENDS, Price, PriceTable, approx_request_tokens
from .request import Answer, ChatRequest, ChatResponse, canonical_json
from .retry import with_retries
from .unreadable import keep_unreadable

log = logging.getLogger("empathy_distill.llm")
T = TypeVar("T")
#: Longest wait before resubmitting requests whose batch failed transiently.
MAX_BATCH_BACKOFF_S = 3600.0

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


class Budget:
    """Spend guard: recorded spend (all runs sharing the cache) + reservations <= limit."""

    def __init__(self, limit_usd: float | None, spent_usd: float) -> None:
        self.limit = limit_usd
        self.spent = spent_usd
        self.reserved = 0.0

    def check(self, amount: float, what: str) -> None:
        if self.limit is None:
            return
        if self.spent + self.reserved + amount > self.limit + 1e-12:
            raise BudgetExceededError(
                f"budget cap llm.budget_usd = ${self.limit:.4f} would be exceeded by {what}:"
                f" projected ${amount:.4f} on top of ${self.spent:.4f} already spent (recorded in"
                f" the cache) and ${self.reserved:.4f} in flight; nothing more was sent"
            )

    def reserve(self, amount: float, what: str) -> None:
        self.check(amount, what)
        self.reserved += amount

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual


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


class Progress:
    """tqdm bar counting done (answered now) / cached / failed."""

    def __init__(self, desc: str, total: int, cached: int, enabled: bool) -> None:
        self.cached = cached
        self.done = 0
        self.failed = 0
        self.bar = tqdm(
            total=total, initial=cached, desc=desc, unit="req", disable=not enabled, mininterval=0.5
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix(done=self.done, cached=self.cached, failed=self.failed, refresh=False)

    def answered(self) -> None:
        self.done += 1
        self.bar.update(1)
        self._postfix()

    def fail(self) -> None:
        self.failed += 1
        self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        self._postfix()
        self.bar.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from inside a running loop (e.g. Jupyter): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def rate_limit_account(endpoint: dict[str, Any]) -> str:
    """Whose per-minute limits a request draws on: the provider counts per key and model.

    The key is named by its variable, never by its value (this string is stored on disk).
    """
    from .backends import api_key_env

    parts = (endpoint["backend"], endpoint.get("base_url") or "", endpoint["model"])
    return "|".join((*parts, api_key_env(endpoint) or ""))


class LLMClient:
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

        ``expected_output_tokens`` (plus the thinking budget; default: the worst case,
        ``max_new_tokens`` plus the thinking budget, ``capabilities.projected_output_tokens``)
        only feeds the budget projection made before anything is sent.
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
        out_tokens = projected_output_tokens(self.endpoint, expected_output_tokens)
        stats = RunStats()
        failures: dict[str, str] = {}
        try:
            if pending:
                budget = Budget(self.budget_usd, self.cache.spent_usd())
                projected = sum(
                    self.price.cost(approx_request_tokens(r), out_tokens) for r in pending.values()
                )
                budget.check(projected, f"{len(pending)} new request(s) of {desc!r}")
                progress = Progress(desc, len(unique), len(before), self.show_progress)
                try:
                    run_sync(self._run(pending, budget, out_tokens, stats, failures, progress))
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
        budget: Budget,
        out_tokens: int,
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
                    backend, pending, budget, out_tokens, stats, failures, progress
                )
            else:
                await self._run_realtime(
                    backend, pending, budget, out_tokens, stats, failures, progress
                )
        finally:
            if owned:
                await backend.aclose()

    def _store_many(
        self, items: list[tuple[ChatRequest, Answer]], stats: RunStats, source: str
    ) -> list[float]:
        """Commit answers in one transaction, then log their spend; their costs, in order.

        The spend row is appended right after the commit, not at the end of the call: a run
        killed with SIGKILL (no ``finally``) must still leave every paid answer in the report.
        """
        rows = []
        for request, answer in items:
            if not answer.model:
                answer = dataclasses.replace(answer, model=request.model)
            cost = self.price.cost(answer.usage["input_tokens"], answer.usage["output_tokens"])
            rows.append((request, answer, cost))
        new = self.cache.put_many(rows, backend=self.backend_name, mode=self.mode, source=source)
        group = RunStats()
        for (_, answer, cost), is_new in zip(rows, new, strict=True):
            if is_new:
                group.answered += 1
                group.input_tokens += answer.usage["input_tokens"]
                group.output_tokens += answer.usage["output_tokens"]
                group.cost_usd += cost
        stats.add(group)
        if group.answered:
            self._report_spend(group)
        return [cost for _, _, cost in rows]

    async def _retry(self, call: Any) -> Any:
        return await with_retries(call, int(self.endpoint["max_retries"]), sleep=self.sleep)

    # Real time ------------------------------------------------------------------------------
    async def _run_realtime(
        self,
        backend: Backend,
        pending: dict[str, ChatRequest],
        budget: Budget,
        out_tokens: int,
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
        commits: GroupCommit[tuple[ChatRequest, Answer], float] = GroupCommit(
            lambda items: self._store_many(items, stats, "realtime")
        )

        async def one(request: ChatRequest) -> None:
            tokens = approx_request_tokens(request)
            estimate = self.price.cost(tokens, out_tokens)
            try:
                if budget_errors:
                    raise budget_errors[0]
                budget.reserve(estimate, request.describe())
            except BudgetExceededError as exc:
                if not budget_errors:
                    budget_errors.append(exc)
                failures[request.key] = str(exc)
                progress.fail()
                return

            async def attempt() -> Answer:
                async with limits.slot(tokens + out_tokens):
                    return await backend.agenerate(request)

            try:
                answer = await self._retry(attempt)
            except (TransientError, PermanentError) as exc:
                budget.settle(estimate, 0.0)
                failures[request.key] = f"{type(exc).__name__}: {exc}"
                stats.failed += 1
                progress.fail()
                return
            cost = await commits.submit((request, answer))
            budget.settle(estimate, cost)
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

    # Batch API ------------------------------------------------------------------------------
    async def _batch_step(self, call: Any, what: str) -> Any:
        """One batch API step with retries; what still fails becomes an LLMError naming it."""
        try:
            return await self._retry(call)
        except (TransientError, PermanentError) as exc:
            how = (
                f"after {self.endpoint['max_retries']} retries"
                if isinstance(exc, TransientError)
                else "(permanent, not retried)"
            )
            raise LLMError(
                f"{self.backend_name}/{self.model}: {what} failed {how}:"
                f" {type(exc).__name__}: {exc}\nAnswers"
                " received so far are cached; rerun to resume (a batch already created is found"
                " again by its tag)."
            ) from exc

    @staticmethod
    def _naming(tag: str, requests: list[ChatRequest]) -> str:
        shown = ", ".join(r.describe(40) for r in requests[:3])
        more = f" and {len(requests) - 3} more" if len(requests) > 3 else ""
        return f"batch {tag} of {len(requests)} request(s) ({shown}{more})"

    async def _submit(self, backend: Backend, tag: str, chunk: list[ChatRequest]) -> str:
        """Create the batch once: a retry first looks it up by its tag, because a create whose
        reply was lost (HTTP 5xx or a dropped connection after creation) may have made it, and
        creating it again would buy every answer twice."""
        tried = False

        async def attempt() -> str:
            nonlocal tried
            if tried:
                found = await backend.find_batch(tag)
                if found is not None:
                    log.info("batch %s was created before its reply was lost", found)
                    return found
            tried = True
            return await backend.submit_batch(tag, chunk)

        return await self._batch_step(attempt, f"submitting {self._naming(tag, chunk)}")

    def _batch_backoff(self, attempt: int) -> float:
        """Wait before resubmitting after a transient batch failure: twice poll_interval_s
        after the first attempt, doubled per attempt, at most an hour (the enqueued-token limit,
        for one, frees up only as running batches finish)."""
        base = float(self.endpoint["poll_interval_s"])
        return min(MAX_BATCH_BACKOFF_S, base * 2 ** max(1, attempt))

    async def _resume_submissions(
        self, backend: Backend, wanted: set[str]
    ) -> dict[str, Submission]:
        """Open submissions of earlier (killed) runs that carry keys we still need."""
        inflight: dict[str, Submission] = {}
        for sub in self.cache.open_submissions(self.backend_name, self.model):
            if not wanted.intersection(sub.keys):
                continue
            if sub.batch_id is None:
                found = await self._batch_step(
                    lambda sub=sub: backend.find_batch(sub.tag),
                    f"looking up batch {sub.tag} ({len(sub.keys)} request(s)) of an earlier run",
                )
                if found is None:  # killed before the batch was created: nothing was sent
                    self.cache.close_submission(sub.tag, "never_created")
                    continue
                self.cache.set_batch_id(sub.tag, found)
                sub = Submission(sub.tag, found, "submitted", sub.keys)
            log.info("resuming batch %s (%d requests)", sub.batch_id, len(sub.keys))
            inflight[sub.tag] = sub
        return inflight

    async def _run_batch(
        self,
        backend: Backend,
        pending: dict[str, ChatRequest],
        budget: Budget,
        out_tokens: int,
        stats: RunStats,
        failures: dict[str, str],
        progress: Progress,
    ) -> None:
        remaining = dict(pending)
        attempts: Counter[str] = Counter()
        last_error: dict[str, str] = {}
        reservations: dict[str, float] = {}
        max_attempts = int(self.endpoint["max_retries"]) + 1
        backoff = 0.0  # wait before the next submission (a transient failure was seen)
        inflight = await self._resume_submissions(backend, set(remaining))
        for sub in inflight.values():
            attempts.update(k for k in sub.keys if k in remaining)
        while remaining or inflight:
            covered = {k for sub in inflight.values() for k in sub.keys}
            to_submit = [r for k, r in remaining.items() if k not in covered]
            chunks = backend.plan_batches(to_submit)
            if chunks and backoff:
                log.info("waiting %.0f s before resubmitting after a failure", backoff)
                await self.sleep(backoff)
                backoff = 0.0
            for chunk in chunks:
                estimate = sum(self.price.cost(approx_request_tokens(r), out_tokens) for r in chunk)
                budget.reserve(estimate, f"a batch of {len(chunk)} request(s)")
                tag = f"ed-{uuid.uuid4().hex}"
                # Recorded BEFORE creation: a kill between the two is found again by its tag.
                self.cache.add_submission(tag, self.backend_name, self.model, chunk)
                batch_id = await self._submit(backend, tag, chunk)
                self.cache.set_batch_id(tag, batch_id)
                log.info("submitted batch %s (%d requests)", batch_id, len(chunk))
                keys = tuple(r.key for r in chunk)
                attempts.update(keys)
                reservations[tag] = estimate
                inflight[tag] = Submission(tag, batch_id, "submitted", keys)
            if not inflight:
                break
            finished = 0
            for tag, sub in list(inflight.items()):
                assert sub.batch_id is not None
                naming = f"batch {sub.batch_id} ({len(sub.keys)} request(s))"
                poll = await self._batch_step(
                    lambda sub=sub: backend.poll_batch(sub.batch_id), f"polling {naming}"
                )
                if poll.state not in TERMINAL:
                    continue
                finished += 1
                results = await self._batch_step(
                    lambda sub=sub: backend.batch_results(sub.batch_id),
                    f"reading the results of {naming}",
                )
                if results.unreadable:  # paid but unreadable: kept, never bought again
                    keep_unreadable(
                        self.cache.dir, self.backend_name, sub.batch_id, results.unreadable
                    )
                if results.malformed:
                    log.warning(
                        "batch %s: %d unreadable result line(s)", sub.batch_id, results.malformed
                    )
                known = self.cache.submission_requests(tag)
                # One transaction and one spend row for the whole batch.
                items = [(known[k], a) for k, a in results.answers.items() if k in known]
                costs = self._store_many(items, stats, f"batch:{sub.batch_id}")
                for request, _ in items:
                    if remaining.pop(request.key, None) is not None:
                        progress.answered()
                budget.settle(reservations.pop(tag, 0.0), sum(costs))
                for key in sub.keys:
                    if key not in remaining:
                        continue
                    item_error = results.errors.get(key)
                    last_error[key] = item_error or (
                        f"batch {sub.batch_id} ended {poll.state} ({poll.detail}) without a"
                        " result for it"
                    )
                    deterministic = key in results.deterministic or (
                        item_error is None and poll.deterministic
                    )
                    if deterministic:
                        failures[key] = f"{last_error[key]} [deterministic: not resubmitted]"
                    elif attempts[key] >= max_attempts:
                        failures[key] = last_error[key]
                    else:
                        if item_error is not None or poll.state == FAILED:
                            backoff = max(backoff, self._batch_backoff(attempts[key]))
                        continue
                    del remaining[key]
                    stats.failed += 1
                    progress.fail()
                self.cache.close_submission(tag, poll.state)
                del inflight[tag]
                log.info("batch %s %s", sub.batch_id, poll.state)
            if inflight and not finished:
                await self.sleep(float(self.endpoint["poll_interval_s"]))

    # Cost report ----------------------------------------------------------------------------
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
    if endpoint["backend"] in FREE_BACKENDS:
        price = Price(0.0, 0.0)
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
