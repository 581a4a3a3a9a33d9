"""The search actor: BM25 + dense top-k for a batch of queries, fused by RRF into candidate rows.

One actor holds both indexes, runs the dense matrix product in one thread while Tantivy answers
the batch's BM25 queries on a thread pool (both release the GIL), and emits one row per
(query, candidate) in the ``candidates`` schema.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.retrieval.bm25 import BM25Searcher
from zelo_ray.retrieval.dense import DenseSearcher
from zelo_ray.retrieval.fusion import rrf_batch

__all__ = ["CANDIDATES", "HybridSearch", "candidate_rows"]

CANDIDATES = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("rrf_score", pa.float64(), nullable=False),
    pa.field("bm25_score", pa.float32()),
    pa.field("bm25_rank", pa.int32()),
    pa.field("dense_score", pa.float32()),
    pa.field("dense_rank", pa.int32()),
])
"""One row per (query, candidate): the union of the BM25 and dense top-k lists, ``rank`` by
RRF (1-based). ``bm25_rank``/``dense_rank`` are null where that list missed the document, so
each single-retriever ranking is recoverable exactly (rows with a non-null rank)."""


def candidate_rows(query_ids: pa.Array, bm25, dense, doc_ids: pa.Array, c: float) -> pa.Table:
    """Fuse per-query (rows, scores) lists into a candidates table (vectorised over the batch)."""
    f = rrf_batch([[r for r, _ in bm25], [r for r, _ in dense]], c)
    cols = {"query_id": pa.array(query_ids, pa.string()).take(pa.array(f.query)),
            "doc_id": doc_ids.take(pa.array(f.ids)),
            "rank": pa.array(f.rank, pa.int32()),
            "rrf_score": pa.array(f.scores, pa.float64())}
    for j, (name, lists) in enumerate((("bm25", bm25), ("dense", dense))):
        r = f.ranks[:, j]
        present = r > 0
        # score of list j at (query, rank): flat index = start of the query's list + rank - 1
        lens = np.fromiter((len(s) for _, s in lists), np.int64, len(lists))
        flat = np.concatenate([s for _, s in lists]).astype(np.float32) if len(lists) else np.empty(0, np.float32)
        start = (np.cumsum(lens) - lens)[f.query]
        score = np.zeros(len(r), np.float32)
        score[present] = flat[start[present] + r[present] - 1]
        cols[f"{name}_score"] = pa.array(score, pa.float32(), mask=~present)
        cols[f"{name}_rank"] = pa.array(r.astype(np.int32), pa.int32(), mask=~present)
    return pa.table({n: cols[n] for n in CANDIDATES.names}, schema=CANDIDATES)


class HybridSearch:
    """``map_batches`` callable: (query_id, text, vector) → candidate rows."""

    def __init__(self, *, corpus: str, bm25_path: str, dense_uri: str, k_bm25: int = 100,
                 k_dense: int = 100, rrf_c: float = 60.0, threads: int = 2, dense_mode: str = "auto",
                 nprobes: int = 20, refine_factor: int | None = 5, ivf_lists: int | None = None,
                 ivf_probe: int = 32, node_copy: tuple[str, ...] = ()):
        """``node_copy``: which of ``bm25``/``dense`` are object-store copies of the driver's
        indexes (a multi-node cluster, :func:`zelo_ray.reach.for_workers`); they are copied to
        this node's disk once and opened there."""
        if node_copy:
            from zelo_ray.storage import local_copy

            bm25_path = local_copy(bm25_path) if "bm25" in node_copy else bm25_path
            dense_uri = local_copy(dense_uri) if "dense" in node_copy else dense_uri
        self.doc_ids = pq.read_table(corpus, columns=["doc_id"]).column(0).combine_chunks()
        self.bm25 = BM25Searcher(bm25_path, threads=threads)
        # Both searches get every thread: they run concurrently and the OS shares the cores,
        # so neither sits idle while the other finishes (measured faster than a 1 + (t-1) split).
        self.dense = DenseSearcher(dense_uri, mode=dense_mode, nprobes=nprobes, refine_factor=refine_factor,
                                   threads=threads, ivf_lists=ivf_lists, ivf_probe=ivf_probe)
        self.k_bm25, self.k_dense, self.c = k_bm25, k_dense, rrf_c
        self.side = ThreadPoolExecutor(1)

    def __call__(self, batch: pa.Table) -> pa.Table:
        col = batch.column("vector").combine_chunks()
        vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), col.type.list_size)
        dense_future = self.side.submit(self.dense.search, vectors, self.k_dense)
        bm25 = self.bm25.search(batch.column("text").to_pylist(), self.k_bm25)
        return candidate_rows(batch.column("query_id").combine_chunks(), bm25, dense_future.result(),
                              self.doc_ids, self.c)
