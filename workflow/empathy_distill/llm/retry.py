"""Retries with exponential backoff and full jitter that honour ``Retry-After``.

WHY ourselves rather than the SDKs' built-in retries: both SDKs are run with retries off so
that one policy (tenacity) governs every backend, counts every attempt against ``max_retries``
and waits exactly as long as the server asked when it says so (429/503 ``Retry-After``,
OpenAI's ``retry-after-ms``, Gemini's ``RetryInfo.retryDelay`` in the error body).

A server-asked wait is honoured in full up to ``llm.retry.max_wait_s`` (default 15 minutes,
``settings.py``) and logged ("waiting 300 s as the server asked"); a longer one stops the
request at once (ServerWaitTooLongError) rather than retrying before the server said it would
answer, which would only spend a retry. Our own exponential backoff (no hint) stays under
``BACKOFF_MAX_S``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
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

from . import settings
from .errors import ServerWaitTooLongError, TransientError

T = TypeVar("T")
log = logging.getLogger("empathy_distill.llm")

#: HTTP statuses worth retrying besides every 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})
#: Longest wait of our own exponential backoff (when the server gives no hint).
BACKOFF_MAX_S = 120.0
#: Server-asked waits at least this long are logged as warnings (shorter ones at info level).
LONG_WAIT_S = 30.0


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
    """tenacity wait: the server's wait when it gave one (callers have already stopped the
    requests whose wait passes the cap), else random exponential backoff."""

    def __init__(self, initial_s: float = 0.5, max_s: float = BACKOFF_MAX_S) -> None:
        self.backoff = wait_random_exponential(multiplier=initial_s, max=max_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return self.backoff(state)


def _say_wait(state: RetryCallState) -> None:
    """Log a server-asked wait before sleeping it out (tenacity ``before_sleep``)."""
    exc = state.outcome.exception() if state.outcome else None
    asked = getattr(exc, "retry_after", None)
    if asked is None or state.next_action is None:
        return
    level = logging.WARNING if asked >= LONG_WAIT_S else logging.INFO
    log.log(level, "waiting %.0f s as the server asked (%s)", state.next_action.sleep, exc)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    max_retries: int,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    initial_s: float = 0.5,
    max_wait_s: float | None = None,
) -> T:
    """Run ``call`` until it succeeds; TransientError is retried ``max_retries`` times.

    ``max_wait_s`` (default ``llm.retry.max_wait_s``) caps a server-asked wait: a longer one
    raises ServerWaitTooLongError at once, naming both.
    """
    cap = settings.current().max_wait_s if max_wait_s is None else float(max_wait_s)

    async def guarded() -> T:
        try:
            return await call()
        except TransientError as exc:
            if exc.retry_after is not None and exc.retry_after > cap:
                raise ServerWaitTooLongError(
                    f"{exc}; the server asked to wait {exc.retry_after:.0f} s, more than"
                    f" llm.retry.max_wait_s = {cap:.0f} s: stopped instead of retrying before"
                    " it said it would answer (raise llm.retry.max_wait_s, or rerun later:"
                    " answers received so far are cached)"
                ) from exc
            raise

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max_retries + 1),
        retry=retry_if_exception_type(TransientError),
        wait=BackoffWait(initial_s),
        sleep=sleep,
        before_sleep=_say_wait,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await guarded()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
