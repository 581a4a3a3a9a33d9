"""Which pairs get judged: each query's candidate graph, and the cross-query calibration pairs.

Both are pure functions of (candidates, config, seed): a query's graph is drawn from a
generator seeded by (run seed, hash of the query id), so it does not depend on which other
queries are in the run, and a re-run asks exactly the same questions.

Tables (Arrow):

* ``nodes``: ``query_id, doc_id, rank, pos`` — each query's top-n candidates, ``pos`` the
  0-based place in that list; rows grouped by query in sorted query order.
* ``pairs``: ``query_id, pair_id, doc_a, doc_b, a_pos, b_pos``.
* ``cross_pairs``: ``pair_id, query_id, doc_a, a_pos, query_b, doc_b, b_pos``.

``pair_id`` is a 64-bit hash of the pair's ids, stable across runs and configs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from zelo_ray.core.graph import CompleteGraphFallback, sample_pairs
from zelo_ray.judges.keys import combine, string_hash, text_hashes, to_signed

__all__ = ["select_nodes", "build_pairs", "pairs_table", "build_cross_pairs", "cross_pair_ids", "cross_plan", "query_bounds"]

_WITHIN = string_hash("within")
_CROSS = string_hash("cross")


def select_nodes(candidates: str, top_n: int, *, queries: list[str] | None = None,
                 max_queries: int | None = None) -> pa.Table:
    """Each query's top-``top_n`` candidates by fused rank."""
    filt = pc.field("rank") <= top_n
    if queries is not None:
        filt = filt & pc.field("query_id").isin(pa.array(queries, pa.string()))
    t = pads.dataset(str(candidates), format="parquet").to_table(columns=["query_id", "doc_id", "rank"],
                                                                 filter=filt)
    t = t.sort_by([("query_id", "ascending"), ("rank", "ascending")])
    if max_queries is not None and t.num_rows:
        keep = pc.unique(t["query_id"])[:max_queries]
        t = t.filter(pc.is_in(t["query_id"], value_set=keep))
    starts, _ = query_bounds(t)
    pos = np.arange(t.num_rows) - np.repeat(starts, np.diff(np.r_[starts, t.num_rows]))
    return t.append_column("pos", pa.array(pos, pa.int32()))


def query_bounds(nodes: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(start row of each query, the query ids) of a table grouped by query."""
    if nodes.num_rows == 0:
        return np.empty(0, np.int64), np.empty(0, object)
    q = np.asarray(nodes["query_id"].to_pylist(), dtype=object)
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    return starts, q[starts]


def _query_rng(seed: int, qid: str) -> np.random.Generator:
    return np.random.default_rng([seed & 0x7FFFFFFFFFFFFFFF, int(string_hash(qid))])


def build_pairs(nodes: pa.Table, *, strategy: str = "cycles", k: int = 8, seed: int = 0) -> pa.Table:
    """The judged pairs of every query (``strategy`` as in :func:`zelo_ray.core.graph.sample_pairs`;
    ``adaptive``: its first round, one random cycle per query, see :func:`adaptive_round`)."""
    if strategy == "adaptive":
        strategy, k = "cycles", 2
    starts, qids = query_bounds(nodes)
    bounds = np.r_[starts, nodes.num_rows]
    chunks = []
    with warnings.catch_warnings():
        # Queries with <= k+1 candidates get their complete graph; that is expected here.
        warnings.simplefilter("ignore", CompleteGraphFallback)
        for q, a, b in zip(qids, bounds[:-1], bounds[1:]):
            n = int(b - a)
            if n >= 2:
                p = sample_pairs(strategy, n, k, _query_rng(seed, q))
                chunks.append((q, a, p))
    return pairs_table(nodes, chunks)


def pairs_table(nodes: pa.Table, chunks: list[tuple[str, int, np.ndarray]]) -> pa.Table:
    """The ``pairs`` table of ``(query id, its first row in nodes, (m, 2) local positions)``
    chunks; ``pair_id`` hashes the query and the two documents' ids (A/B order kept)."""
    chunks = [c for c in chunks if len(c[2])]
    if not chunks:
        return pa.table({"query_id": pa.array([], pa.string()), "pair_id": pa.array([], pa.int64()),
                         "doc_a": pa.array([], pa.string()), "doc_b": pa.array([], pa.string()),
                         "a_pos": pa.array([], pa.int32()), "b_pos": pa.array([], pa.int32())})
    doc = nodes["doc_id"]
    ia = np.concatenate([p[:, 0] + a for _, a, p in chunks])
    ib = np.concatenate([p[:, 1] + a for _, a, p in chunks])
    pos = nodes["pos"].to_numpy()
    qh = text_hashes([q for q, _, _ in chunks])
    qrep = np.repeat(qh, [len(p) for _, _, p in chunks])
    dh = text_hashes(doc.to_pylist())
    pid = to_signed(combine(_WITHIN, qrep, dh[ia], dh[ib]))
    qcol = np.concatenate([np.full(len(p), q, dtype=object) for q, _, p in chunks])
    return pa.table({"query_id": pa.array(qcol, pa.string()), "pair_id": pid,
                     "doc_a": doc.take(pa.array(ia)), "doc_b": doc.take(pa.array(ib)),
                     "a_pos": pa.array(pos[ia], pa.int32()), "b_pos": pa.array(pos[ib], pa.int32())})


def extra_pairs(nodes: pa.Table, query_ids: list[str], doc_a: list[str], doc_b: list[str]) -> pa.Table:
    """Pairs chosen outside the graph (the refinement pass), in the layout of :func:`build_pairs`.

    Both documents must be candidates of the query in ``nodes``; pair ids hash the same way, so
    a pair the graph already holds keeps its id (and its stored votes)."""
    pos = {(q, d): int(p) for q, d, p in zip(nodes["query_id"].to_pylist(), nodes["doc_id"].to_pylist(),
                                             nodes["pos"].to_pylist())}
    for q, a, b in zip(query_ids, doc_a, doc_b):
        for d in (a, b):
            if (q, d) not in pos:
                raise ValueError(f"extra pair ({q!r}, {a!r}, {b!r}): {d!r} is not a judged candidate of {q!r}")
    pid = to_signed(combine(_WITHIN, text_hashes(list(query_ids)), text_hashes(list(doc_a)),
                            text_hashes(list(doc_b)))) if query_ids else pa.array([], pa.int64())
    return pa.table({"query_id": pa.array(list(query_ids), pa.string()), "pair_id": pa.array(pid, pa.int64()),
                     "doc_a": pa.array(list(doc_a), pa.string()), "doc_b": pa.array(list(doc_b), pa.string()),
                     "a_pos": pa.array([pos[(q, a)] for q, a in zip(query_ids, doc_a)], pa.int32()),
                     "b_pos": pa.array([pos[(q, b)] for q, b in zip(query_ids, doc_b)], pa.int32())})


def cross_plan(sizes: np.ndarray, *, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cross-query pairs from each query's candidate count alone: (E, 2) query indexes (a
    k-regular cycle graph over the queries) and the position of the candidate drawn on each side."""
    if k == 0 or len(sizes) < 2:
        return np.empty((0, 2), np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    rng = np.random.default_rng([seed & 0x7FFFFFFFFFFFFFFF, int(_CROSS)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompleteGraphFallback)
        edges = sample_pairs("cycles", len(sizes), k, rng)
    pos_a = (rng.random(len(edges)) * sizes[edges[:, 0]]).astype(np.int64)
    pos_b = (rng.random(len(edges)) * sizes[edges[:, 1]]).astype(np.int64)
    return edges.astype(np.int64), pos_a, pos_b


def cross_pair_ids(query_a: np.ndarray, doc_a: list, query_b: np.ndarray, doc_b: list) -> np.ndarray:
    """Stable ids of cross-query pairs (query ids as hashes, documents as ids)."""
    return to_signed(combine(_CROSS, query_a, text_hashes(doc_a), query_b, text_hashes(doc_b)))


def build_cross_pairs(nodes: pa.Table, *, k: int = 4, seed: int = 0) -> pa.Table:
    """Q·k/2 cross-query pairs: a k-regular cycle graph over the queries (connected, so every
    offset is tied to every other), each edge comparing one random candidate of each query."""
    starts, qids = query_bounds(nodes)
    edges, pos_a, pos_b = cross_plan(np.diff(np.r_[starts, nodes.num_rows]), k=k, seed=seed)
    if not len(edges):
        return pa.table({"pair_id": pa.array([], pa.int64()), "query_id": pa.array([], pa.string()),
                         "doc_a": pa.array([], pa.string()), "a_pos": pa.array([], pa.int32()),
                         "query_b": pa.array([], pa.string()), "doc_b": pa.array([], pa.string()),
                         "b_pos": pa.array([], pa.int32())})
    ia, ib = starts[edges[:, 0]] + pos_a, starts[edges[:, 1]] + pos_b
    doc = nodes["doc_id"]
    pos = nodes["pos"].to_numpy()
    qh = text_hashes(qids)
    da, db = doc.take(pa.array(ia)), doc.take(pa.array(ib))
    pid = cross_pair_ids(qh[edges[:, 0]], da.to_pylist(), qh[edges[:, 1]], db.to_pylist())
    return pa.table({"pair_id": pid, "query_id": pa.array(qids[edges[:, 0]], pa.string()), "doc_a": da,
                     "a_pos": pa.array(pos[ia], pa.int32()),
                     "query_b": pa.array(qids[edges[:, 1]], pa.string()), "doc_b": db,
                     "b_pos": pa.array(pos[ib], pa.int32())})
