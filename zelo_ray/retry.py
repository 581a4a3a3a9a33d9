"""Retrying an HTTP call politely: exponential backoff with jitter, and the server's own
``Retry-After`` (seconds, milliseconds or an HTTP date) when it sends one. Used by the judges'
caller (an LLM endpoint) and the audit's rerank-endpoint caller alike.

Example::

    >>> 0.5 <= backoff_delay(0, base=1.0, cap=60.0, u=0.0) <= 1.0
    True
    >>> retry_after_seconds({"Retry-After": "3"}), retry_after_seconds({"retry-after-ms": "250"})
    (3.0, 0.25)
    >>> retry_after_seconds({}) is None
    True
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

__all__ = ["backoff_delay", "retry_after_seconds"]


def backoff_delay(attempt: int, *, base: float, cap: float, u: float, retry_after: float | None = None) -> float:
    """Delay before retry ``attempt`` (0-based): ``base·2^attempt`` capped, with "equal jitter"
    (uniform in [half, full]) from ``u`` in [0, 1); a server's Retry-After wins when longer
    (itself capped at ten times ``cap``, so a wrong header cannot park a caller for hours)."""
    full = min(cap, base * (2.0 ** attempt))
    delay = full * (0.5 + 0.5 * u)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap * 10))
    return delay


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds a response asks the client to wait: ``retry-after-ms`` (OpenAI-style), else
    ``Retry-After`` as delay-seconds or an HTTP date (RFC 9110); None when absent or unreadable.
    Header names are matched case-insensitively."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = lower.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = parsedate_to_datetime(str(value)).timestamp()
            except (TypeError, ValueError):
                return None
            return max(0.0, when - (time.time() if now is None else now))
    return None
