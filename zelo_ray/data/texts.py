"""The texts a reranker reads: a query's, and a document's as ``"title. text"``.

One definition for training, validation, evaluation and the audit, so the model is always scored
on the text it was trained on.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["doc_texts", "query_texts"]


def doc_texts(col, doc_ids: list[str]) -> dict[str, str]:
    """``doc_id → "title. text"`` for the given documents (the text a reranker reads)."""
    if not doc_ids:
        return {}
    wanted = pa.array(sorted(set(doc_ids)), pa.string())
    out: dict[str, str] = {}
    # batch by batch, keeping only the rows asked for: memory is the answer plus one batch, not
    # the whole corpus
    f = pq.ParquetFile(col.corpus_path, pre_buffer=False)
    for batch in f.iter_batches(batch_size=16_384, columns=["doc_id", "title", "text"]):
        hit = pc.is_in(batch.column(0), value_set=wanted)
        if not pc.any(hit).as_py():
            continue
        t = batch.filter(hit)
        out.update((d, f"{ti}. {tx}" if ti else tx)
                   for d, ti, tx in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), t.column(2).to_pylist()))
    return out


def query_texts(col) -> dict[str, str]:
    q = col.queries()
    return dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))
