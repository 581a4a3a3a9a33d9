"""How many judge-caller actors a run needs, from the endpoints' own limits.

A caller is one process driving an asyncio loop of HTTP calls; one tops out near 200 calls/s
(docs/benchmarks.md §7: 4.25 ms of client CPU per call), so the pool is sized to the rate the
endpoints allow — min(max_concurrency / latency, requests_per_minute / 60), summed over hosted
judges — divided by a per-caller budget kept below that ceiling. Each endpoint's limits are then
split evenly between the callers, so adding callers never exceeds a limit.

Example::

    >>> from zelo_ray.config import OpenAIJudgeConfig
    >>> j = OpenAIJudgeConfig(name="a", model="m", base_url="http://x", max_concurrency=2048,
    ...                       requests_per_minute=30_000)
    >>> caller_count([j])       # 500 calls/s allowed by the RPM limit → 4 callers of 150/s
    4
"""

from __future__ import annotations

import math

from zelo_ray.config.judges import OpenAIJudgeConfig

__all__ = ["CALLS_PER_S_PER_CALLER", "caller_count", "endpoint_rate"]

CALLS_PER_S_PER_CALLER = 150.0  # measured ceiling ~200/s per caller process; keep headroom


def endpoint_rate(judge, latency_s: float = 2.0) -> float:
    """Calls/s one hosted endpoint can take: its concurrency over a typical latency, capped by RPM."""
    rate = judge.max_concurrency / latency_s
    if judge.requests_per_minute:
        rate = min(rate, judge.requests_per_minute / 60.0)
    return rate


def caller_count(judges, *, latency_s: float = 2.0, per_caller: float = CALLS_PER_S_PER_CALLER,
                 cap: int = 64) -> int:
    """Callers for the hosted (``openai``-kind) judges; simulated judges need one."""
    rate = sum(endpoint_rate(j, latency_s) for j in judges if isinstance(j, OpenAIJudgeConfig))
    return int(min(cap, max(1, math.ceil(rate / per_caller))))
