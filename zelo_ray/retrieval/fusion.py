"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009).

``rrf(d) = Σ_lists 1 / (c + rank_list(d))`` with 1-based ranks and c = 60; a list that did not
return ``d`` contributes nothing. Pure numpy, no I/O.

Example::

    >>> import numpy as np
    >>> from zelo_ray.retrieval.fusion import rrf
    >>> f = rrf([np.array([7, 3]), np.array([3, 9])])
    >>> f.ids.tolist(), f.ranks.tolist()
    ([3, 7, 9], [[2, 1], [1, 0], [0, 2]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Fused", "rrf"]


@dataclass(frozen=True)
class Fused:
    ids: np.ndarray
    """Fused ranking, best first (ties broken by best single-list rank, then id)."""
    scores: np.ndarray
    """RRF score of each id."""
    ranks: np.ndarray
    """(len(ids), n_lists) 1-based rank in each list; 0 = absent from that list."""


def rrf(lists: Sequence[np.ndarray], c: float = 60.0) -> Fused:
    """Fuse ranked id lists (each best first, ids unique within a list)."""
    if c < 0:
        raise ValueError(f"RRF constant c={c} must be >= 0")
    lists = [np.asarray(x, np.int64) for x in lists]
    ids = np.unique(np.concatenate(lists)) if lists else np.empty(0, np.int64)
    ranks = np.zeros((len(ids), len(lists)), np.int64)
    scores = np.zeros(len(ids))
    for j, lst in enumerate(lists):
        if len(np.unique(lst)) != len(lst):
            raise ValueError(f"list {j} repeats an id")
        pos = np.searchsorted(ids, lst)
        ranks[pos, j] = np.arange(1, len(lst) + 1)
        scores[pos] += 1.0 / (c + ranks[pos, j])
    best = np.where(ranks > 0, ranks, np.iinfo(np.int64).max).min(axis=1) if len(lists) else ranks[:, 0]
    order = np.lexsort((ids, best, -scores))
    return Fused(ids[order], scores[order], ranks[order])
