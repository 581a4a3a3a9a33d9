"""Parquet schemas of a prepared collection (the contract between stages).

A prepared collection is a directory::

    corpus.parquet        row, doc_id, title, text, empty
    queries.parquet       query_id, text, empty
    qrels/<split>.parquet query_id, doc_id, relevance
    manifest.json         source, fingerprint, counts, warnings

``row`` is the 0-based position of the document in ``corpus.parquet``; the dense and lexical
indexes store it instead of the id string, so a hit resolves to an id by array lookup.
``empty`` marks documents (or queries) whose title and text are blank: they are kept, so ids
in qrels still resolve, but they are flagged. Relevance is the graded gain, higher = better
(0 = judged not relevant).
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["CORPUS", "QRELS", "QUERIES", "DataError"]

CORPUS = pa.schema([
    pa.field("row", pa.int64(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("empty", pa.bool_(), nullable=False),
])

QUERIES = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("empty", pa.bool_(), nullable=False),
])

QRELS = pa.schema([
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("relevance", pa.int32(), nullable=False),
])


class DataError(ValueError):
    """Input data is malformed; the message names the file and line (or the id) at fault."""
