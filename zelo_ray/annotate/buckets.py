"""How a run is cut into buckets of queries, so that the driver holds one bucket's pairs, calls and
votes at a time and its memory does not grow with the number of queries.

A query's bucket follows from its vote-store partition (:func:`zelo_ray.judges.store.partition_of`):
a bucket is a run of consecutive partitions holding at most ``annotate.bucket_queries`` queries
(one partition at least), so judging a bucket reads and compacts only its partitions. Everything a
query's pairs depend on is the query's own (graph seeded by the query id), so buckets give the
same pairs, calls and Elo scores as one pass over every query; a run with fewer queries than
``bucket_queries`` is one bucket.

The plan needs two scans of the candidates: one counts each query's top-n, one splits the rows
into a file per bucket (``<annotate>/.buckets/``). The cross-query pairs (one graph over all
queries) are planned from the counts alone, exactly as :func:`zelo_ray.annotate.pairs.build_cross_pairs`
draws them, and their documents are looked up bucket by bucket.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from zelo_ray.annotate.pairs import cross_pair_ids, cross_plan, query_bounds
from zelo_ray.judges.keys import text_hashes
from zelo_ray.judges.store import partition_of

__all__ = ["Plan", "plan_buckets", "bucket_nodes"]


@dataclass
class Plan:
    qids: np.ndarray
    """(Q,) every query of the run, sorted."""
    sizes: np.ndarray
    """(Q,) candidates judged per query (≤ top_n)."""
    bucket: np.ndarray
    """(Q,) bucket of each query."""
    partitions: list[list[int]]
    """Vote-store partitions of each bucket."""
    files: list[Path]
    """Candidate rows (query_id, doc_id, rank) of each bucket."""
    cross: pa.Table
    """Cross-query pairs (the layout of ``build_cross_pairs``) plus ``qa, qb``: query indexes."""

    @property
    def n_buckets(self) -> int:
        return len(self.files)


def _filter(top_n: int, queries: list[str] | None):
    f = pc.field("rank") <= top_n
    if queries is not None:
        f = f & pc.field("query_id").isin(pa.array(queries, pa.string()))
    return f


def _count(candidates: str, top_n: int, queries, max_queries) -> tuple[np.ndarray, np.ndarray]:
    counts: dict[str, int] = {}
    scanner = pads.dataset(str(candidates), format="parquet").scanner(columns=["query_id"],
                                                                      filter=_filter(top_n, queries))
    for batch in scanner.to_batches():
        if batch.num_rows:
            vc = pc.value_counts(batch.column(0))
            for q, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                counts[q] = counts.get(q, 0) + c
    qids = np.array(sorted(counts), dtype=object)
    if max_queries is not None:
        qids = qids[:max_queries]
    return qids, np.array([counts[q] for q in qids], dtype=np.int64)


def _group(part: np.ndarray, n_partitions: int, bucket_queries: int) -> tuple[np.ndarray, list[list[int]]]:
    per = np.bincount(part, minlength=n_partitions)
    groups, cur, size = [], [], 0
    for p in range(n_partitions):
        if cur and size + per[p] > bucket_queries:
            groups.append(cur)
            cur, size = [], 0
        cur.append(p)
        size += int(per[p])
    groups.append(cur)
    of = np.empty(n_partitions, np.int64)
    for b, g in enumerate(groups):
        of[g] = b
    return of[part], groups


def plan_buckets(candidates: str, top_n: int, *, queries: list[str] | None, max_queries: int | None,
                 bucket_queries: int, n_partitions: int, k_cross: int, seed: int, work: Path) -> Plan:
    qids, sizes = _count(candidates, top_n, queries, max_queries)
    part = partition_of(pa.array(qids.tolist(), pa.string()), n_partitions) if len(qids) else np.empty(0, np.int64)
    bucket, groups = _group(part, n_partitions, bucket_queries)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files = [work / f"bucket-{b:05d}.parquet" for b in range(len(groups))]
    dataset = pads.dataset(str(candidates), format="parquet")
    schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()),
                        ("rank", dataset.schema.field("rank").type)])
    writers = [pq.ParquetWriter(f, schema) for f in files]
    try:
        value_set = pa.array(qids.tolist(), pa.string())
        scanner = dataset.scanner(columns=["query_id", "doc_id", "rank"], filter=_filter(top_n, queries))
        for batch in scanner.to_batches():
            if not batch.num_rows:
                continue
            t = pa.Table.from_batches([batch]).cast(schema)
            idx = pc.index_in(t["query_id"], value_set=value_set)
            keep = pc.is_valid(idx)
            t, idx = t.filter(keep), idx.filter(keep).to_numpy(zero_copy_only=False)
            b = bucket[idx]
            for one in np.unique(b):
                writers[one].write_table(t.filter(pa.array(b == one)))
    finally:
        for w in writers:
            w.close()
    cross = _cross_plan(sizes, k_cross, seed)
    plan = Plan(qids=qids, sizes=sizes, bucket=bucket, partitions=groups, files=files, cross=cross)
    return _resolve_cross_docs(plan, top_n)


def bucket_nodes(plan: Plan, b: int, top_n: int) -> pa.Table:
    """Bucket ``b``'s nodes, as :func:`zelo_ray.annotate.pairs.select_nodes` lays them out."""
    t = pq.read_table(plan.files[b]).sort_by([("query_id", "ascending"), ("rank", "ascending")])
    starts, _ = query_bounds(t)
    pos = np.arange(t.num_rows) - np.repeat(starts, np.diff(np.r_[starts, t.num_rows]))
    return t.append_column("pos", pa.array(pos, pa.int32()))


def _cross_plan(sizes: np.ndarray, k: int, seed: int) -> pa.Table:
    edges, pos_a, pos_b = cross_plan(sizes, k=k, seed=seed)  # the draws build_cross_pairs makes
    return pa.table({"qa": edges[:, 0], "qb": edges[:, 1], "a_pos": pa.array(pos_a, pa.int32()),
                     "b_pos": pa.array(pos_b, pa.int32())})


def _resolve_cross_docs(plan: Plan, top_n: int) -> Plan:
    c = plan.cross
    n = c.num_rows
    if n == 0:
        plan.cross = pa.table({"pair_id": pa.array([], pa.int64()), "query_id": pa.array([], pa.string()),
                               "doc_a": pa.array([], pa.string()), "a_pos": pa.array([], pa.int32()),
                               "query_b": pa.array([], pa.string()), "doc_b": pa.array([], pa.string()),
                               "b_pos": pa.array([], pa.int32()), "qa": pa.array([], pa.int64()),
                               "qb": pa.array([], pa.int64())})
        return plan
    qa, qb = c["qa"].to_numpy(), c["qb"].to_numpy()
    pos_a, pos_b = c["a_pos"].to_numpy().astype(np.int64), c["b_pos"].to_numpy().astype(np.int64)
    doc_a = np.empty(n, dtype=object)
    doc_b = np.empty(n, dtype=object)
    for b in range(plan.n_buckets):
        nodes = bucket_nodes(plan, b, top_n)
        starts, ids = query_bounds(nodes)
        if not len(ids):
            continue
        local = {q: i for i, q in enumerate(ids)}
        docs = np.asarray(nodes["doc_id"].to_pylist(), dtype=object)
        for q_side, pos, out in ((qa, pos_a, doc_a), (qb, pos_b, doc_b)):
            rows = np.flatnonzero(plan.bucket[q_side] == b)
            li = np.array([local[q] for q in plan.qids[q_side[rows]]], dtype=np.int64)
            out[rows] = docs[starts[li] + pos[rows]]
    qh = text_hashes(plan.qids.tolist())
    pid = cross_pair_ids(qh[qa], doc_a.tolist(), qh[qb], doc_b.tolist())
    plan.cross = pa.table({"pair_id": pid, "query_id": pa.array(plan.qids[qa].tolist(), pa.string()),
                           "doc_a": pa.array(doc_a.tolist(), pa.string()), "a_pos": c["a_pos"],
                           "query_b": pa.array(plan.qids[qb].tolist(), pa.string()),
                           "doc_b": pa.array(doc_b.tolist(), pa.string()), "b_pos": c["b_pos"],
                           "qa": c["qa"], "qb": c["qb"]})
    return plan
