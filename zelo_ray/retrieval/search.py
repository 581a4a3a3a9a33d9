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
from zelo_ray.retrieval.fusion import rrf

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


def candidate_rows(query_ids, bm25, dense, doc_ids: np.ndarray, c: float) -> pa.Table:
    """Fuse per-query (rows, scores) lists into a candidates table."""
    cols: dict[str, list] = {n: [] for n in CANDIDATES.names}
    for qid, (b_rows, b_scores), (d_rows, d_scores) in zip(query_ids, bm25, dense):
        f = rrf([b_rows, d_rows], c)
        m = len(f.ids)
        br, dr = f.ranks[:, 0], f.ranks[:, 1]
        cols["query_id"].append(np.full(m, qid, dtype=object))
        cols["doc_id"].append(doc_ids[f.ids])
        cols["rank"].append(np.arange(1, m + 1, dtype=np.int32))
        cols["rrf_score"].append(f.scores)
        cols["bm25_rank"].append(np.where(br > 0, br, -1))
        cols["dense_rank"].append(np.where(dr > 0, dr, -1))
        cols["bm25_score"].append(np.where(br > 0, b_scores[np.maximum(br - 1, 0)] if len(b_scores) else 0, 0))
        cols["dense_score"].append(np.where(dr > 0, d_scores[np.maximum(dr - 1, 0)] if len(d_scores) else 0, 0))
    if not cols["query_id"]:
        return CANDIDATES.empty_table()
    arrays = []
    for field in CANDIDATES:
        values = np.concatenate(cols[field.name])
        mask = None
        if field.name in ("bm25_rank", "bm25_score"):
            mask = np.concatenate(cols["bm25_rank"]) < 0
        elif field.name in ("dense_rank", "dense_score"):
            mask = np.concatenate(cols["dense_rank"]) < 0
        arrays.append(pa.array(values, field.type, mask=mask))
    return pa.Table.from_arrays(arrays, schema=CANDIDATES)


class HybridSearch:
    """``map_batches`` callable: (query_id, text, vector) → candidate rows."""

    def __init__(self, *, corpus: str, bm25_path: str, dense_uri: str, k_bm25: int = 100,
                 k_dense: int = 100, rrf_c: float = 60.0, threads: int = 2, dense_mode: str = "auto",
                 nprobes: int = 20, refine_factor: int | None = 5):
        self.doc_ids = np.asarray(pq.read_table(corpus, columns=["doc_id"]).column(0).to_pylist(), dtype=object)
        self.bm25 = BM25Searcher(bm25_path, threads=threads)
        self.dense = DenseSearcher(dense_uri, mode=dense_mode, nprobes=nprobes,
                                   refine_factor=refine_factor, threads=max(1, threads - 1) if threads > 1 else 1)
        self.k_bm25, self.k_dense, self.c = k_bm25, k_dense, rrf_c
        self.side = ThreadPoolExecutor(1)

    def __call__(self, batch: pa.Table) -> pa.Table:
        col = batch.column("vector").combine_chunks()
        vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), col.type.list_size)
        dense_future = self.side.submit(self.dense.search, vectors, self.k_dense)
        bm25 = self.bm25.search(batch.column("text").to_pylist(), self.k_bm25)
        return candidate_rows(batch.column("query_id").to_pylist(), bm25, dense_future.result(),
                              self.doc_ids, self.c)
