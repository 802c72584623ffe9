"""Batch API orchestration of an ``LLMClient`` (mixed in): submit, poll, read, resubmit, resume.

Each batch is recorded in the cache before it is created and found again by its tag, so a run
killed at any point polls the same batches on resume instead of buying them again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from typing import Any

from .backends.base import FAILED, TERMINAL, Backend
from .budget import SharedBudget, worst_case_cost
from .cache import Submission
from .errors import BudgetExceededError, LLMError, PermanentError, TransientError
from .ledger import RunStats
from .progress import Progress
from .request import ChatRequest
from .unreadable import keep_unreadable

log = logging.getLogger("empathy_distill.llm")
#: Longest wait before resubmitting requests whose batch failed transiently.
MAX_BATCH_BACKOFF_S = 3600.0


class BatchDispatch:
    """``_run_batch`` and its steps, of ``LLMClient``."""

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

    def _affordable(
        self, chunk: list[ChatRequest], budget: SharedBudget, max_out: int
    ) -> tuple[list[ChatRequest], BudgetExceededError | None]:
        """The longest head of ``chunk`` whose worst case fits under the cap once the
        reservations in flight settle, and the error that refuses the rest (None: all fit).
        A batch is bought whole, so the part that cannot fit is cut off before submission."""
        if budget.limit is None:
            return chunk, None
        spent, reserved = budget.state()
        room = budget.limit - spent + 1e-12
        total = 0.0
        for i, request in enumerate(chunk):
            total += worst_case_cost(request, self.price, max_out, self.thinking)
            if total > room:
                error = BudgetExceededError(
                    budget.refusal(
                        sum(
                            worst_case_cost(r, self.price, max_out, self.thinking)
                            for r in chunk[i:]
                        ),
                        f"{len(chunk) - i} request(s) of a batch",
                        spent,
                        reserved,
                    )
                )
                return chunk[:i], error
        return chunk, None

    async def _run_batch(
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
        remaining = dict(pending)
        attempts: Counter[str] = Counter()
        last_error: dict[str, str] = {}
        budget_error: BudgetExceededError | None = None
        max_attempts = int(self.endpoint["max_retries"]) + 1
        backoff = 0.0  # wait before the next submission (a transient failure was seen)
        inflight = await self._resume_submissions(backend, set(remaining))
        for sub in inflight.values():
            attempts.update(k for k in sub.keys if k in remaining)
        while remaining or inflight:
            covered = {k for sub in inflight.values() for k in sub.keys}
            to_submit = [r for k, r in remaining.items() if k not in covered]
            chunks = backend.plan_batches(to_submit)
            deferred = False
            if chunks and backoff:
                log.info("waiting %.0f s before resubmitting after a failure", backoff)
                await self.sleep(backoff)
                backoff = 0.0
            for index, whole in enumerate(chunks):
                chunk, refused = self._affordable(whole, budget, max_out)
                worst = sum(worst_case_cost(r, self.price, max_out, self.thinking) for r in chunk)
                tag = f"ed-{uuid.uuid4().hex}"
                try:
                    # Held by the batch (its tag), not this process: a killed run's batch is
                    # still billed, so its reservation stays until the results are read.
                    if chunk and not budget.try_reserve(worst, self._naming(tag, chunk), tag):
                        deferred = True  # fits once batches in flight are read: next round
                        continue
                except BudgetExceededError as exc:  # spend grew in between
                    chunk, refused = [], exc
                if refused is not None:
                    # Stop submitting (what is left cannot fit); batches in flight are read.
                    budget_error = budget_error or refused
                    for chunk_rest in (whole[len(chunk) :], *chunks[index + 1 :]):
                        for request in chunk_rest:
                            failures[request.key] = str(refused)
                            del remaining[request.key]
                            progress.fail()
                if not chunk:
                    break
                # Recorded BEFORE creation: a kill between the two is found again by its tag.
                self.cache.add_submission(tag, self.backend_name, self.model, chunk)
                batch_id = await self._submit(backend, tag, chunk)
                self.cache.set_batch_id(tag, batch_id)
                log.info("submitted batch %s (%d requests)", batch_id, len(chunk))
                keys = tuple(r.key for r in chunk)
                attempts.update(keys)
                inflight[tag] = Submission(tag, batch_id, "submitted", keys)
                if refused is not None:
                    break  # the head that fits is submitted; the rest was refused above
            if not inflight:
                if not deferred:
                    break
                # only other jobs' reservations stand in the way: they settle in time
                await asyncio.sleep(float(self.endpoint["poll_interval_s"]))
                continue
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
                # One transaction and one spend row for the whole batch; the batch's
                # reservation is replaced by its real charge in that transaction.
                items = [(known[k], a) for k, a in results.answers.items() if k in known]
                self._store_many(items, stats, f"batch:{sub.batch_id}", release=[tag])
                for request, _ in items:
                    if remaining.pop(request.key, None) is not None:
                        progress.answered()
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
        if budget_error is not None:
            raise budget_error
