"""Client-side throttling: parallel requests, requests per minute, tokens per minute.

WHY: providers answer over-eager clients with 429s (and may suspend keys); staying under the
configured limits is cheaper than retrying. aiolimiter's leaky bucket does the per-minute
budgets; a semaphore caps requests in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter


class RateLimits:
    def __init__(
        self,
        concurrency: int,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.rpm = AsyncLimiter(requests_per_minute, 60) if requests_per_minute else None
        self.tpm = AsyncLimiter(tokens_per_minute, 60) if tokens_per_minute else None

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Hold one of the ``concurrency`` slots after the per-minute budgets allow a request."""
        async with self.semaphore:
            if self.rpm is not None:
                await self.rpm.acquire()
            if self.tpm is not None:
                # A single request larger than the whole per-minute budget still has to go.
                await self.tpm.acquire(min(max(tokens, 1), self.tpm.max_rate))
            yield
