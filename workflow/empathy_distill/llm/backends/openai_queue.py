"""This run's share of an OpenAI organisation's batch queue (the enqueued-token limit).

OpenAI caps, per model, the prompt tokens of all batches an organisation has enqueued at once
(Batch guide, "Rate limits": "Enqueued prompt tokens per model: Each model has a maximum number
of enqueued prompt tokens allowed for batch processing", https://platform.openai.com/docs/guides/batch;
the per-tier values are on the organisation's limits page, https://platform.openai.com/settings/organization/limits,
and https://platform.openai.com/docs/guides/rate-limits). A batch over it is accepted, then ends
``failed`` with ``errors.data[].code == "token_limit_exceeded"`` ("Enqueued token limit
reached for <model> in organization <org>. Limit: <n> enqueued tokens. Please try again once
some in_progress batches have been completed."). Output tokens do not count.

So: with ``llm.openai.max_enqueued_tokens`` set for the model, chunks are cut to it and only as
many are submitted as fit beside this process's batches still in flight (the rest wait for a
later round of the batch loop, which polls the ones in flight). A chunk refused all the same
(other jobs or runs share the queue, or our token estimate is low) makes the cap half that
chunk, so its requests go again in halves, never as the same batch; and nothing more is
submitted until fewer of this process's batches are in flight than when it was refused (or
``MAX_DRAIN_S`` has passed). Every resubmission counts against ``max_retries``, which bounds
the halving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..pricing import approx_request_tokens
from ..request import ChatRequest
from .base import split_batches

log = logging.getLogger("empathy_distill.llm")
#: Share of the configured limit planned for: our token count is an estimate (pricing.py).
QUEUE_MARGIN = 0.9
#: Longest wait for this process's batches to drain after a refusal before trying again.
MAX_DRAIN_S = 3600.0
REFUSAL_CODE = "token_limit_exceeded"


def chunk_tokens(chunk: list[ChatRequest]) -> int:
    """Enqueued (prompt) tokens of a batch, as estimated for the budget (pricing.py)."""
    return sum(approx_request_tokens(r) for r in chunk)


class BatchQueue:
    """Which chunks may be enqueued now, given this process's batches in flight."""

    def __init__(self, limit: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        #: Cap learned from refusals: half the last refused chunk.
        self.learned: int | None = None
        #: batch id -> enqueued tokens (None: a batch of an earlier process, size unknown).
        self.inflight: dict[str, int | None] = {}
        #: After a refusal: (batches of ours in flight then, deadline) until fewer are.
        self.drain: tuple[int, float] | None = None
        self._halve_next = False

    def cap(self) -> int | None:
        caps = [c for c in (self._configured(), self.learned) if c is not None]
        return min(caps) if caps else None

    def _configured(self) -> int | None:
        return None if self.limit is None else max(1, int(self.limit * QUEUE_MARGIN))

    def plan(
        self,
        requests: list[ChatRequest],
        split: Callable[[list[ChatRequest]], list[list[ChatRequest]]],
    ) -> list[list[ChatRequest]]:
        """The chunks to submit now (``split`` applies the request and byte limits)."""
        if self._halve_next and requests:
            self._learn(chunk_tokens(requests))
            self._halve_next = False
        cap = self.cap()
        pieces = [requests]
        if cap is not None:
            pieces = split_batches(requests, approx_request_tokens, len(requests) or 1, cap)
        chunks = [c for piece in pieces for c in split(piece) if c]
        if self.drain is not None:
            count, deadline = self.drain
            if self.inflight and len(self.inflight) >= count and self.clock() < deadline:
                return []
            self.drain = None
        if cap is None:
            return chunks
        used = sum(cap if t is None else t for t in self.inflight.values())
        admitted: list[list[ChatRequest]] = []
        for chunk in chunks:
            tokens = chunk_tokens(chunk)
            if used + tokens > cap and (used > 0 or admitted):
                break
            admitted.append(chunk)
            used += tokens
        if len(admitted) < len(chunks):
            log.info(
                "batch queue: %d of %d batch(es) wait for room (%d of %d enqueued tokens in"
                " flight)",
                len(chunks) - len(admitted),
                len(chunks),
                used,
                cap,
            )
        return admitted

    def submitted(self, batch_id: str, chunk: list[ChatRequest]) -> None:
        self.inflight[batch_id] = chunk_tokens(chunk)

    def running(self, batch_id: str) -> None:
        """A batch seen in flight; one of an earlier process counts as filling the queue."""
        self.inflight.setdefault(batch_id, None)

    def finished(self, batch_id: str) -> None:
        self.inflight.pop(batch_id, None)

    def refused(self, batch_id: str) -> None:
        """The batch failed with token_limit_exceeded: halve, then wait for our queue to drain."""
        tokens = self.inflight.pop(batch_id, None)
        if tokens is None:
            self._halve_next = True  # size unknown: halve what is planned next
        else:
            self._learn(tokens)
        self.drain = (len(self.inflight), self.clock() + MAX_DRAIN_S)
        cap = "half the planned" if self._halve_next else f"at most {self.cap()}"
        waits = (
            f"once fewer than {len(self.inflight)} of this run's batches are in flight"
            if self.inflight
            else "after the backoff"
        )
        log.warning(
            "batch %s refused by the organisation's queue (%s): its requests go again in"
            " batches of %s enqueued tokens, %s",
            batch_id,
            REFUSAL_CODE,
            cap,
            waits,
        )

    def _learn(self, tokens: int) -> None:
        half = max(1, tokens // 2)
        self.learned = half if self.learned is None else min(self.learned, half)
