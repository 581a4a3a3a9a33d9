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

__all__ = ["Fused", "FusedBatch", "rrf", "rrf_batch"]


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


@dataclass(frozen=True)
class FusedBatch:
    """RRF of many queries at once, laid out query after query, each query best first."""

    query: np.ndarray
    """(m,) index of the query each row belongs to (non-decreasing)."""
    ids: np.ndarray
    """(m,) fused ids."""
    scores: np.ndarray
    """(m,) RRF scores."""
    ranks: np.ndarray
    """(m, n_lists) 1-based rank in each list, 0 = absent."""
    rank: np.ndarray
    """(m,) 1-based fused rank within the query."""


def rrf_batch(lists: Sequence[Sequence[np.ndarray]], c: float = 60.0) -> FusedBatch:
    """:func:`rrf` for a batch: ``lists[j][q]`` is list j's ranking for query q. Same result
    (order and ties) as calling :func:`rrf` per query, without a Python loop per query."""
    if c < 0:
        raise ValueError(f"RRF constant c={c} must be >= 0")
    n_lists = len(lists)
    n_queries = len(lists[0]) if n_lists else 0
    qs, ids, which, ranks = [], [], [], []
    for j, per_query in enumerate(lists):
        if len(per_query) != n_queries:
            raise ValueError(f"list {j} has {len(per_query)} queries, list 0 has {n_queries}")
        lens = np.fromiter((len(x) for x in per_query), np.int64, n_queries)
        qs.append(np.repeat(np.arange(n_queries), lens))
        ids.append(np.concatenate([np.asarray(x, np.int64) for x in per_query]) if n_queries else np.empty(0, np.int64))
        which.append(np.full(lens.sum(), j))
        starts = np.repeat(np.cumsum(lens) - lens, lens)
        ranks.append(np.arange(lens.sum()) - starts + 1)
    q, ids_all = np.concatenate(qs), np.concatenate(ids)
    which_all, rank_all = np.concatenate(which), np.concatenate(ranks)
    # one row per (query, id): sort by (query, id) and collapse
    order = np.lexsort((ids_all, q))
    q, ids_all, which_all, rank_all = q[order], ids_all[order], which_all[order], rank_all[order]
    new = np.r_[True, (q[1:] != q[:-1]) | (ids_all[1:] != ids_all[:-1])] if len(q) else np.empty(0, bool)
    group = np.cumsum(new) - 1
    m = int(group[-1]) + 1 if len(group) else 0
    if len(group) and np.any(np.bincount(group * max(n_lists, 1) + which_all) > 1):
        raise ValueError("a list repeats an id within a query")
    out_ranks = np.zeros((m, n_lists), np.int64)
    out_ranks[group, which_all] = rank_all
    scores = np.zeros(m)
    np.add.at(scores, group, 1.0 / (c + rank_all))
    uq, uid = q[new], ids_all[new]
    best = np.where(out_ranks > 0, out_ranks, np.iinfo(np.int64).max).min(axis=1) if m else np.empty(0, np.int64)
    final = np.lexsort((uid, best, -scores, uq))
    uq, uid, scores, out_ranks = uq[final], uid[final], scores[final], out_ranks[final]
    counts = np.bincount(uq, minlength=n_queries)
    rank = np.arange(m) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return FusedBatch(uq, uid, scores, out_ranks, rank)
