"""What every judge backend takes and returns: columnar batches of calls and results.

A *call* shows a judge two items in a fixed order (first, second) and asks for a score in
[-1, 1], negative when the first-shown item is better. The caller decides the order and turns
the sign back afterwards; a backend never sees the pair's canonical A/B orientation. A failed
call comes back as ``score = NaN`` with its error message — a missing vote, never a score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

__all__ = ["CallBatch", "ResultBatch", "Judge", "JudgeSetupError", "Texts", "VOTE_SCHEMA"]


VOTE_SCHEMA = pa.schema([
    ("pair_id", pa.int64()), ("query_id", pa.string()), ("kind", pa.string()), ("probe", pa.bool_()),
    ("judge", pa.string()), ("model", pa.string()), ("swapped", pa.bool_()),
    ("score", pa.float64()), ("error", pa.string()),
    ("input_tokens", pa.int64()), ("output_tokens", pa.int64()), ("cost", pa.float64()),
    ("latency_s", pa.float64()), ("attempts", pa.int64()), ("prompt_version", pa.string()),
    ("cache_key", pa.int64()),
])
"""``score`` is in the pair's A/B frame (negative: A better), null for a missing vote, whose
``error`` says why."""


class JudgeSetupError(RuntimeError):
    """A judge cannot be built (e.g. its API key variable is unset); the message names it."""


Texts = tuple[str, str, str, str | None]
"""(query, first text, second text, query of the second item or None when it is the same)."""


@dataclass
class CallBatch:
    """n calls to one judge."""

    key: np.ndarray
    """(n,) int64 cache key of each call (judge model, prompt version, texts, order)."""
    texts: Callable[[int], Texts]
    """Texts of call i, resolved lazily (the simulated judge never needs them)."""
    first_rel: np.ndarray | None = None
    """(n,) hidden relevance of the first-shown item (simulated judge only)."""
    second_rel: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.key)


@dataclass
class ResultBatch:
    """n answers, in the order of the calls; NaN score = missing vote."""

    score: np.ndarray
    error: list[str | None]
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    latency_s: np.ndarray
    attempts: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "ResultBatch":
        return cls(score=np.full(n, np.nan), error=[None] * n, input_tokens=np.zeros(n, np.int64),
                   output_tokens=np.zeros(n, np.int64), latency_s=np.zeros(n), attempts=np.zeros(n, np.int64))


class Judge(Protocol):
    name: str
    model: str

    async def judge_batch(self, calls: CallBatch, on_answer: Callable[[int, ResultBatch], None] | None = None
                          ) -> ResultBatch:
        """Answer every call. A judge whose answers arrive one by one calls ``on_answer(i, out)``
        as soon as call ``i``'s result in ``out`` is final (the caller logs it durably then)."""
        ...

    async def aclose(self) -> None: ...
