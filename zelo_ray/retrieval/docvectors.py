"""The dense index's document vectors, read back with the text each was computed from.

A model whose document tower is the index's embedding model (query-tower training,
``train/query_tower.py``) needs exactly these vectors; reading them back instead of running the
encoder over the corpus again is what makes its training, validation and evaluation cheap on a
CPU (NFCorpus: 3,395 documents took 276 s to embed on 2 cores, reading them back under a second).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

__all__ = ["index_text", "index_vectors"]


def index_text(title: str | None, text: str) -> str:
    """The text the indexer embeds for a document (``retrieval/embedder.py``)."""
    return f"{title}\n{text}" if title else text


def index_vectors(dense_uri: str | Path, corpus_path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(doc_ids, texts, vectors): every indexed document's id, embedded text and unit vector, in
    corpus order. Raises when the index does not cover the corpus (an unfinished or stale index)."""
    import lancedb

    corpus = pq.read_table(str(corpus_path), columns=["doc_id", "title", "text"])
    db = lancedb.connect(str(dense_uri))
    table = db.open_table("docs").to_arrow().sort_by("row")
    rows = table["row"].to_numpy()
    if len(rows) != corpus.num_rows or (len(rows) and (rows[0] != 0 or rows[-1] != corpus.num_rows - 1)):
        raise ValueError(f"{dense_uri}: {len(rows)} vectors for {corpus.num_rows} documents of {corpus_path}; "
                         "run `zelo index` to finish the index")
    dim = table.schema.field("vector").type.list_size
    vectors = table["vector"].combine_chunks().flatten().to_numpy().reshape(-1, dim).astype(np.float32)
    texts = [index_text(a, b) for a, b in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())]
    return corpus["doc_id"].to_pylist(), texts, vectors
