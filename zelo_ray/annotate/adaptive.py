"""The next round of an adaptive judging run (``graph.strategy: adaptive``), for one bucket.

A round's pairs are a pure function of the candidates, the config and the votes of the earlier
rounds (through their Elo fit), so a re-run derives the same pairs again: a run killed mid-round
asks only that round's calls it had no answer for, and nothing already answered is paid twice.
The per-query math is :mod:`zelo_ray.core.adaptive`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.annotate.pairs import pairs_table, query_bounds
from zelo_ray.core.adaptive import next_pairs, round_budgets, settled
from zelo_ray.judges.keys import string_hash

__all__ = ["Round", "adaptive_round", "next_round"]


@dataclass
class Round:
    pairs: pa.Table
    """The round's new pairs (layout of :func:`zelo_ray.annotate.pairs.build_pairs`)."""
    queries: int
    """Queries that got new pairs."""
    settled: int
    """Queries that stopped early: their head's order is known at ``graph.confidence``."""


def next_round(nodes: pa.Table, pairs: pa.Table, elo: pa.Table, graph_cfg, r: int, *, model: str,
               seed: int) -> Round:
    """Round ``r`` (1-based after the first cycle) of every query in ``nodes``: ``pairs`` are those
    judged so far, ``elo`` their fit (rows aligned with ``nodes``: ``elo``, ``stderr``)."""
    starts, qids = query_bounds(nodes)
    ends = np.r_[starts[1:], nodes.num_rows]
    scores = elo["elo"].to_numpy(zero_copy_only=False)
    stderr = elo["stderr"].to_numpy(zero_copy_only=False)
    judged = _judged_by_query(pairs, qids)
    chunks, n_settled = [], 0
    for q, (a, b) in enumerate(zip(starts, ends)):
        n = int(b - a)
        budgets = round_budgets(n, graph_cfg.k, graph_cfg.rounds)
        if r >= len(budgets) or budgets[r] == 0:
            continue
        if graph_cfg.confidence is not None and settled(scores[a:b], stderr[a:b], top=graph_cfg.top,
                                                        confidence=graph_cfg.confidence):
            n_settled += 1
            continue
        rng = np.random.default_rng([seed & 0x7FFFFFFFFFFFFFFF, int(string_hash(qids[q])), r])
        new = next_pairs(scores[a:b], stderr[a:b], judged[q], budgets[r], top=graph_cfg.top, model=model, rng=rng)
        chunks.append((qids[q], int(a), new))
    table = pairs_table(nodes, chunks)
    return Round(table, len({c[0] for c in chunks if len(c[2])}), n_settled)


def adaptive_round(cfg, nodes: pa.Table, pairs: pa.Table, tasks: pa.Table, store, r: int) -> Round:
    """The Elo fit of a bucket's votes so far (``tasks`` of its ``pairs``, answers in ``store``)
    → round ``r``'s pairs, less any the bucket already holds (a refinement pair)."""
    from zelo_ray.annotate.scores import fit_within, task_scores
    from zelo_ray.annotate.teacher import clamp_mask

    acfg = cfg.annotate
    partitions = np.unique(store.partition_of(nodes["query_id"])) if nodes.num_rows else []
    ts = task_scores(tasks, store.read(partitions))
    fit = fit_within(nodes, pairs, ts, [j.name for j in acfg.judges], clamp=clamp_mask(acfg),
                     min_votes=acfg.min_votes, elo_cfg=cfg.elo.model_copy(update={"stderr": True}))
    step = next_round(nodes, pairs, fit.table, cfg.graph, r, model=cfg.elo.model, seed=acfg.seed)
    step.pairs = step.pairs.filter(pc.invert(pc.is_in(step.pairs["pair_id"], value_set=pairs["pair_id"])))
    return step


def _judged_by_query(pairs: pa.Table, qids: np.ndarray) -> list[np.ndarray]:
    """Per query (in ``qids`` order), its judged pairs as (m, 2) local positions."""
    if pairs.num_rows == 0:
        return [np.zeros((0, 2), np.int64) for _ in qids]
    q = pc.index_in(pairs["query_id"], value_set=pa.array(list(qids), pa.string())).to_numpy(zero_copy_only=False)
    local = np.stack([pairs["a_pos"].to_numpy(), pairs["b_pos"].to_numpy()], axis=1).astype(np.int64)
    order = np.argsort(q, kind="stable")
    cuts = np.searchsorted(q[order], np.arange(1, len(qids)))
    return np.split(local[order], cuts)
