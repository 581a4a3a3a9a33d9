"""Client-side limits of one endpoint: concurrency, requests/minute, tokens/minute, backoff.

Rates are token buckets refilled continuously and allowed to burst half a second's worth. The
token bucket is charged an estimate before a call and corrected by the reported usage after,
so it may go negative and then holds later calls back. A 429 with ``Retry-After`` pauses the
whole endpoint (every call waiting on this limiter), not only the call that got it, because
the provider's window is shared.

Example::

    >>> import asyncio
    >>> from zelo_ray.judges.limits import EndpointLimiter
    >>> lim = EndpointLimiter(max_concurrency=2, requests_per_minute=600)
    >>> async def one():
    ...     async with lim.slot(tokens=100):
    ...         return 1
    >>> asyncio.run(one())
    1

Backoff between retries is :func:`zelo_ray.retry.backoff_delay`.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

__all__ = ["Bucket", "EndpointLimiter"]

BURST_S = 0.5
"""A bucket holds this many seconds of its rate (at least one unit). Providers enforce their
per-minute limits over windows down to a second; keeping our bursts well under that leaves room
for requests that reach the provider bunched up (sent at the rate, delayed unevenly in transit)."""


class Bucket:
    """A token bucket of ``per_minute`` units; ``take`` waits until the units are there."""

    def __init__(self, per_minute: float, *, clock=time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_S)
        self.level = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._last) * self.rate)
        self._last = now

    async def take(self, units: float) -> None:
        # One waiter at a time keeps the order fair and the arithmetic simple; a call bigger
        # than the bucket waits for a full bucket and then drives it negative.
        async with self._lock:
            need = min(units, self.capacity)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= units
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def adjust(self, units: float) -> None:
        """Charge (positive) or refund (negative) units after the fact."""
        self._refill()
        self.level = min(self.capacity, self.level - units)


class EndpointLimiter:
    """Concurrency cap + optional request and token buckets + a shared pause for 429s."""

    def __init__(self, max_concurrency: int, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None) -> None:
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.requests = Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute) if tokens_per_minute else None
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    async def _wait_pause(self) -> None:
        while (delay := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def slot(self, tokens: float = 0.0):
        """Hold one concurrency slot for the duration of a request, after the rate limits."""
        await self._wait_pause()
        if self.requests:
            await self.requests.take(1)
        if self.tokens and tokens:
            await self.tokens.take(tokens)
        async with self.semaphore:
            await self._wait_pause()
            yield

    def settle(self, estimated: float, actual: float) -> None:
        if self.tokens:
            self.tokens.adjust(actual - estimated)
