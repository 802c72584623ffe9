"""What every backend provides: one real-time call, and (optionally) a batch job interface."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..request import Answer, ChatRequest

T = TypeVar("T")

#: Batch job states the client understands (backends map theirs onto these).
RUNNING, COMPLETED, FAILED, EXPIRED, CANCELLED = (
    "running",
    "completed",
    "failed",
    "expired",
    "cancelled",
)
TERMINAL = (COMPLETED, FAILED, EXPIRED, CANCELLED)


@dataclass
class BatchPoll:
    state: str
    detail: str = ""
    #: The whole batch failed for a reason that resubmitting the same requests cannot fix (its
    #: input was invalid); a failure not known to be deterministic is treated as transient.
    deterministic: bool = False


@dataclass
class BatchResults:
    """Answers and per-item errors of a finished batch, joined by request key (custom_id)."""

    answers: dict[str, Answer] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    malformed: int = 0
    #: Keys of ``errors`` that would fail again if resubmitted (e.g. context too long).
    deterministic: set[str] = field(default_factory=set)
    #: key -> the raw result line of an answer that was paid for but could not be read: kept
    #: (``unreadable.py``) so that nothing bought is lost; the item is a final error.
    unreadable: dict[str, str] = field(default_factory=dict)


class Backend:
    """Base class. ``agenerate`` raises TransientError (retry) or PermanentError (give up)."""

    name = "backend"
    supports_batch = False
    local = False
    max_batch_requests = 50_000
    max_batch_bytes = 200_000_000

    async def agenerate(self, request: ChatRequest) -> Answer:
        raise NotImplementedError

    def generate_many(self, requests: list[ChatRequest]) -> list[Answer]:
        """Local backends only: answer a batch in-process."""
        raise NotImplementedError

    def batch_line(self, request: ChatRequest) -> bytes:
        """Serialized size of one batch item (used to split under the size limit)."""
        raise NotImplementedError

    def plan_batches(self, requests: list[ChatRequest]) -> list[list[ChatRequest]]:
        """The batches to submit now, in order. A backend whose provider queues a limited
        amount may return fewer than all (the rest wait for a later round of the batch loop),
        but never none while it has no batch of its own in flight."""
        return split_batches(
            requests,
            lambda r: len(self.batch_line(r)),
            self.max_batch_requests,
            self.max_batch_bytes,
        )

    async def submit_batch(self, tag: str, requests: list[ChatRequest]) -> str:
        raise NotImplementedError

    async def find_batch(self, tag: str) -> str | None:
        """Batch id of a submission recorded but not confirmed before a crash, if it exists."""
        raise NotImplementedError

    async def poll_batch(self, batch_id: str) -> BatchPoll:
        raise NotImplementedError

    async def batch_results(self, batch_id: str) -> BatchResults:
        raise NotImplementedError

    async def cancel_batch(self, batch_id: str) -> None:
        """Ask the provider to stop a submitted batch (``empathy-distill batches``)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def split_batches(
    requests: Iterable[T],
    size_of: Callable[[T], int],
    max_requests: int,
    max_bytes: int,
) -> list[list[T]]:
    """Cut requests (or any items) into consecutive batches of at most ``max_requests`` items
    and ``max_bytes`` summed ``size_of`` (an item alone over it still gets its own batch)."""
    batches: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    for request in requests:
        size = size_of(request)
        if current and (len(current) >= max_requests or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(request)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def jsonl_lines(data: bytes) -> list[str]:
    """Lines of a JSONL result file, split on "\\n" only.

    Never ``str.splitlines``: it also cuts at U+2028, U+2029 and U+0085, which JSON writers that
    do not escape non-ASCII (both providers' result files) leave raw inside answer strings.
    """
    return data.decode("utf-8").split("\n")


def usage_dict(
    input_tokens: Any, output_tokens: Any, *, reasoning_tokens: Any = None
) -> dict[str, int]:
    """Usage of one answer; ``output_tokens`` is every billed output token, reasoning included.

    ``reasoning_tokens``, when the provider reports it, is the part of ``output_tokens`` spent
    on reasoning (informative, never added to the bill a second time).
    """
    usage = {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)}
    if reasoning_tokens is not None:
        usage["reasoning_tokens"] = int(reasoning_tokens)
    return usage
