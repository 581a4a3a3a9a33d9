"""One set of endpoint limits for every judge caller of a run, however many there are.

A pool of caller actors that grows and shrinks (Ray Data's autoscaling actor pool) cannot split
an endpoint's limits between its members: the split is fixed when the pool starts, and a pool
that doubles would double the request rate. So the limits live in one place, a
:class:`LimitBook` held by a single Ray actor (:func:`start_limits`), and every caller asks it
for a slot before each HTTP attempt (:class:`SharedEndpointLimiter`, the same interface as the
in-process :class:`~zelo_ray.judges.limits.EndpointLimiter`). The book enforces each endpoint's
request and token buckets and its concurrency cap across all callers, and a 429's
``Retry-After`` pauses the endpoint for all of them.

A caller that dies holding slots cannot return them; a slot not returned within its lease
(a few times the judge's timeout) is taken back, so a crash does not shrink the endpoint.

Example (no Ray needed for the book itself)::

    >>> import asyncio
    >>> book = LimitBook({"gpt": EndpointLimits(max_concurrency=2, requests_per_minute=6000)})
    >>> async def two_callers():
    ...     a = await book.acquire("gpt", 0.0, "caller-a")
    ...     b = await book.acquire("gpt", 0.0, "caller-b")
    ...     busy = book.stats()["gpt"]["in_use"]
    ...     await book.release("gpt", a); await book.release("gpt", b)
    ...     return busy, book.stats()["gpt"]["in_use"], book.clients()
    >>> asyncio.run(two_callers())
    (2, 0, 2)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from zelo_ray.judges.limits import Bucket

__all__ = ["EndpointLimits", "LimitBook", "SharedEndpointLimiter", "limits_of", "start_limits"]


@dataclass(frozen=True)
class EndpointLimits:
    """One endpoint's limits for the whole run (not per caller)."""

    max_concurrency: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    lease_s: float = 300.0
    """A slot not returned after this long is taken back (its caller died)."""


def limits_of(judges) -> dict[str, EndpointLimits]:
    """The limits of every judge that calls an endpoint, by judge name."""
    from zelo_ray.config.judges import OpenAIJudgeConfig

    out = {}
    for j in judges:
        if not isinstance(j, OpenAIJudgeConfig):
            continue
        # an attempt holds its slot for at most one timeout; the margin covers a slow event loop
        out[j.name] = EndpointLimits(j.max_concurrency, j.requests_per_minute, j.tokens_per_minute,
                                     lease_s=2.0 * j.timeout_s + 30.0)
    return out


class _Endpoint:
    def __init__(self, limits: EndpointLimits, clock) -> None:
        self.limits = limits
        self.requests = Bucket(limits.requests_per_minute, clock=clock) if limits.requests_per_minute else None
        self.tokens = Bucket(limits.tokens_per_minute, clock=clock) if limits.tokens_per_minute else None
        self.leases: dict[int, float] = {}
        """Slot id → the time it is taken back."""
        self.freed = asyncio.Event()
        self.paused_until = 0.0
        self.granted = self.reclaimed = 0
        self.peak = 0


class LimitBook:
    """Request/token buckets, a concurrency cap and a pause per endpoint, shared by every caller.

    ``acquire`` waits for the rate buckets, then for a free slot, and returns the slot's id;
    ``release`` gives it back. Callers are told apart by the id they pass, only to count them."""

    def __init__(self, endpoints: dict[str, EndpointLimits], *, clock=time.monotonic) -> None:
        self._clock = clock
        self._ep = {name: _Endpoint(lim, clock) for name, lim in endpoints.items()}
        self._ids = itertools.count(1)
        self._clients: set[str] = set()

    def _endpoint(self, name: str) -> _Endpoint:
        try:
            return self._ep[name]
        except KeyError:
            raise KeyError(f"no limits for judge {name!r} (known: {sorted(self._ep)})") from None

    async def _wait_pause(self, ep: _Endpoint) -> None:
        while (delay := ep.paused_until - self._clock()) > 0:
            await asyncio.sleep(delay)

    def _reclaim(self, ep: _Endpoint) -> None:
        now = self._clock()
        for slot in [s for s, until in ep.leases.items() if until <= now]:
            del ep.leases[slot]
            ep.reclaimed += 1

    async def acquire(self, endpoint: str, tokens: float, client: str) -> int:
        ep = self._endpoint(endpoint)
        self._clients.add(client)
        await self._wait_pause(ep)
        if ep.requests:
            await ep.requests.take(1)
        if ep.tokens and tokens:
            await ep.tokens.take(tokens)
        while len(ep.leases) >= ep.limits.max_concurrency:
            self._reclaim(ep)
            if len(ep.leases) < ep.limits.max_concurrency:
                break
            ep.freed.clear()
            wake = min(ep.leases.values()) - self._clock()
            try:
                await asyncio.wait_for(ep.freed.wait(), timeout=max(wake, 0.01))
            except asyncio.TimeoutError:
                pass
        await self._wait_pause(ep)
        slot = next(self._ids)
        ep.leases[slot] = self._clock() + ep.limits.lease_s
        ep.granted += 1
        ep.peak = max(ep.peak, len(ep.leases))
        return slot

    async def release(self, endpoint: str, slot: int) -> None:
        ep = self._endpoint(endpoint)
        if ep.leases.pop(slot, None) is not None:
            ep.freed.set()

    async def settle(self, endpoint: str, estimated: float, actual: float) -> None:
        ep = self._endpoint(endpoint)
        if ep.tokens:
            ep.tokens.adjust(actual - estimated)

    async def pause(self, endpoint: str, seconds: float) -> None:
        ep = self._endpoint(endpoint)
        ep.paused_until = max(ep.paused_until, self._clock() + seconds)

    def clients(self) -> int:
        """How many distinct callers have asked for a slot."""
        return len(self._clients)

    def stats(self) -> dict[str, dict]:
        return {name: dict(in_use=len(ep.leases), peak=ep.peak, granted=ep.granted, reclaimed=ep.reclaimed)
                for name, ep in self._ep.items()}

    async def report(self) -> dict:
        """``stats`` and ``clients`` in one call (what the driver logs at the end)."""
        return {"clients": self.clients(), "endpoints": self.stats()}


def start_limits(judges, *, name: str | None = None):
    """Start the run's limit actor for ``judges`` (those with endpoint limits); None if none has.

    The actor takes no CPU (it only waits), and is named so that it shows in the Ray dashboard."""
    endpoints = limits_of(judges)
    if not endpoints:
        return None
    import os

    import ray

    from zelo_ray.raysession import beside_this_process

    # every slot request is a coroutine waiting in the actor; allow all of them at once
    concurrency = max(1000, 4 * sum(e.max_concurrency for e in endpoints.values()))
    actor = ray.remote(LimitBook).options(
        name=name or f"zelo-limits-{os.getpid()}-{time.time_ns()}", num_cpus=0,
        max_concurrency=concurrency, max_restarts=0, **beside_this_process())
    return actor.remote(endpoints)


class SharedEndpointLimiter:
    """The caller's side of a :class:`LimitBook` actor: ``slot``, ``settle`` and ``pause`` like
    :class:`~zelo_ray.judges.limits.EndpointLimiter`, each forwarded to the actor. Only the slot
    request is waited for; returns, token corrections and pauses are sent without waiting."""

    def __init__(self, book, endpoint: str, client: str) -> None:
        self.book, self.endpoint, self.client = book, endpoint, client

    @asynccontextmanager
    async def slot(self, tokens: float = 0.0):
        slot = await self.book.acquire.remote(self.endpoint, float(tokens), self.client)
        try:
            yield
        finally:
            self.book.release.remote(self.endpoint, slot)

    def settle(self, estimated: float, actual: float) -> None:
        if actual != estimated:
            self.book.settle.remote(self.endpoint, float(estimated), float(actual))

    def pause(self, seconds: float) -> None:
        self.book.pause.remote(self.endpoint, float(seconds))
