"""When a long loop prints its next progress line, and what it says about the time left.

A console that shows a line every few seconds for an hour-long judging run is a wall of text;
one that is silent for minutes looks hung. :class:`Ticker` prints the first line after
``first_s`` (a short loop only prints its last), then one every ``every_s``, and always the
last, each with the rate and an ETA.

    >>> t = Ticker(total=100, first_s=10, every_s=30, now=lambda: 0.0)
    >>> t.due(5, now=4.0), t.due(20, now=12.0), t.due(30, now=20.0), t.due(100, now=21.0)
    (False, True, False, True)
    >>> t.eta(50, now=20.0)
    'ETA 20s'
"""

from __future__ import annotations

import time
from contextlib import contextmanager

__all__ = ["Ticker", "duration", "timed"]


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Ticker:
    def __init__(self, total: int, *, first_s: float = 10.0, every_s: float = 30.0, now=time.perf_counter) -> None:
        self.total, self.first_s, self.every_s, self._now = total, first_s, every_s, now
        self.t0 = now()
        self._last: float | None = None

    def due(self, done: int, *, now: float | None = None) -> bool:
        """Whether to print a line now (and, if so, counts it as printed)."""
        t = self._now() if now is None else now
        last = done >= self.total
        wait = self.first_s if self._last is None else self.every_s
        if last or t - (self.t0 if self._last is None else self._last) >= wait:
            self._last = t
            return True
        return False

    def rate(self, done: int, *, now: float | None = None) -> float:
        t = self._now() if now is None else now
        return done / max(t - self.t0, 1e-9)

    def eta(self, done: int, *, now: float | None = None) -> str:
        if done >= self.total:
            return f"done in {duration((self._now() if now is None else now) - self.t0)}"
        r = self.rate(done, now=now)
        return f"ETA {duration((self.total - done) / r)}" if r > 0 else "ETA unknown"


@contextmanager
def timed(timings: dict, key: str, digits: int = 2):
    """Add the seconds the ``with`` block takes to ``timings[key]`` (a stage's timing table).

    >>> t = {}
    >>> with timed(t, "work_s"):
    ...     pass
    >>> t["work_s"] >= 0
    True
    """
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - t0, digits)
