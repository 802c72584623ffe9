"""Retries with exponential backoff and full jitter that honour ``Retry-After``.

WHY ourselves rather than the SDKs' built-in retries: both SDKs are run with retries off so
that one policy (tenacity) governs every backend, counts every attempt against ``max_retries``
and waits exactly as long as the server asked when it says so (429/503 ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from .errors import TransientError

T = TypeVar("T")

#: HTTP statuses worth retrying besides every 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})
MAX_WAIT_S = 120.0


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


class BackoffWait:
    """tenacity wait: the server's Retry-After when given, else random exponential backoff."""

    def __init__(self, initial_s: float = 0.5, max_s: float = MAX_WAIT_S) -> None:
        self.backoff = wait_random_exponential(multiplier=initial_s, max=max_s)
        self.max_s = max_s

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.max_s)
        return self.backoff(state)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    max_retries: int,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    initial_s: float = 0.5,
) -> T:
    """Run ``call`` until it succeeds; TransientError is retried ``max_retries`` times."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_retries + 1),
        retry=retry_if_exception_type(TransientError),
        wait=BackoffWait(initial_s),
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
