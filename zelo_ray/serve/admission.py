"""Admission control of one replica: shed a request at once rather than let every accepted
request's latency grow without bound under a burst.

Ray Serve bounds the *number* of requests queued in front of a replica
(``max_queued_requests``, answered by Serve's proxy with its own body). A rerank request's cost
is its tokens, not its count — one request of 100 long documents is the work of a hundred small
ones — so the replica also bounds the tokens it has accepted and not yet scored. A request that
would take that past ``max_pending_tokens`` is answered with 429 (or 503) and ``Retry-After`` in
its API's own error body, before any model work; an idle replica always admits one request, so
a request larger than the budget is slow, never refused.

Example::

    >>> gate = Admission(max_pending_tokens=1000)
    >>> gate.try_admit(800), gate.try_admit(300)   # the second would wait behind 800 tokens
    (True, False)
    >>> gate.try_admit(200), gate.full(), gate.admits_any(), gate.shed
    (True, True, False, 2)
    >>> gate.release(200)
    >>> gate.release(800); gate.try_admit(5000)      # idle: admitted whatever its size
    True
"""

from __future__ import annotations

__all__ = ["Admission"]


class Admission:
    """Tokens accepted and not yet answered, against a budget. Used from the replica's event
    loop only (one thread), so it needs no lock."""

    def __init__(self, max_pending_tokens: int):
        if max_pending_tokens < 1:
            raise ValueError(f"max_pending_tokens must be >= 1, got {max_pending_tokens}")
        self.max_pending_tokens = max_pending_tokens
        self.pending_tokens = 0
        self.pending_requests = 0
        self.shed = 0

    def full(self) -> bool:
        """No request, however small, would be admitted now."""
        return self.pending_requests > 0 and self.pending_tokens >= self.max_pending_tokens

    def admits_any(self) -> bool:
        """The check before a request is tokenised: False (counted as a shed) when :meth:`full`."""
        if self.full():
            self.shed += 1
            return False
        return True

    def try_admit(self, tokens: int) -> bool:
        """Admit ``tokens`` of work (count them as pending) or refuse it (count a shed)."""
        if self.pending_requests and self.pending_tokens + tokens > self.max_pending_tokens:
            self.shed += 1
            return False
        self.pending_tokens += tokens
        self.pending_requests += 1
        return True

    def release(self, tokens: int) -> None:
        """An admitted request of ``tokens`` finished (answered or failed)."""
        self.pending_tokens -= tokens
        self.pending_requests -= 1
