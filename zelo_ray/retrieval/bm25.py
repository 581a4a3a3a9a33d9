"""BM25 over title + text with Tantivy (tantivy-py): a restartable on-disk index and a
multi-threaded searcher.

Tantivy scores with BM25 (k1 = 1.2, b = 0.75). Title and text go into one ``body`` field, the
"flat" indexing used for BEIR's published BM25 baselines (Anserini), so a query term's
statistics are not split across fields. Each document also stores its corpus ``row`` as a fast
field: a hit becomes an id by array lookup instead of loading a stored document.

Example::

    >>> from zelo_ray.retrieval.bm25 import build_bm25, BM25Searcher   # doctest: +SKIP
    >>> build_bm25("corpus.parquet", "index/bm25")                      # doctest: +SKIP
    >>> BM25Searcher("index/bm25").search(["wing slipstream"], k=10)     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tantivy

__all__ = ["TOKENIZERS", "BM25Searcher", "analyzer", "build_bm25", "query_terms"]

_STATE = "zelo_bm25_state.json"
TOKENIZERS = ("en_stem", "en_stem_stop", "default")
"""'en_stem': Tantivy's English tokenizer (split on non-alphanumerics, drop tokens > 40 bytes,
lowercase, Porter2 stemming). 'en_stem_stop' adds Lucene's English stopword list (what Anserini
uses). 'default': no stemming."""



def analyzer(tokenizer: str) -> tantivy.TextAnalyzer:
    """The analyzer that indexes ``body`` under ``tokenizer``, built explicitly so queries can be
    run through exactly the same chain (Tantivy's built-in 'default' and 'en_stem' are these
    filters in this order)."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"bm25 tokenizer {tokenizer!r}: expected one of {TOKENIZERS}")
    b = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
         .filter(tantivy.Filter.remove_long(40))
         .filter(tantivy.Filter.lowercase()))
    if tokenizer == "en_stem_stop":
        b = b.filter(tantivy.Filter.stopword("english"))
    if tokenizer != "default":
        b = b.filter(tantivy.Filter.stemmer("english"))
    return b.build()


def _register(index: tantivy.Index, tokenizer: str) -> None:
    if tokenizer == "en_stem_stop":
        index.register_tokenizer("en_stem_stop", analyzer(tokenizer))


def _schema(tokenizer: str) -> tantivy.Schema:
    return (tantivy.SchemaBuilder()
            .add_text_field("body", stored=False, tokenizer_name=tokenizer, index_option="freq")
            .add_unsigned_field("row", stored=False, indexed=True, fast=True)
            .build())


def query_terms(text: str, analyze: tantivy.TextAnalyzer) -> list[str]:
    """The terms BM25 scores for ``text``: the document analyzer's tokens, repeats kept (a term
    asked twice weighs twice, as in Anserini's bag-of-words queries). User text never meets a
    query parser, so quotes, ``AND``/``OR``, ``title:``, ``_``-joined words (which a parser
    would turn into phrase queries the position-less index cannot answer) are plain words."""
    return analyze.analyze(text)


def _write_state(path: Path, state: dict) -> None:
    tmp = path / (_STATE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path / _STATE)


def _saved_state(path: Path, fingerprint: dict) -> dict:
    """The recorded state if it was written for this corpus and tokenizer, else a fresh one."""
    if (path / _STATE).exists():
        old = json.loads((path / _STATE).read_text())
        if old.get("fingerprint") == fingerprint:
            return old
    return {"committed_rows": 0, "fingerprint": fingerprint, "complete": False}


def _open_writer(path: Path, tokenizer: str, start: int, heap_mb: int, threads: int):
    """A writer on a fresh index (stale files removed) or on the partial one, with documents
    past the last recorded commit dropped (their commit was not recorded)."""
    fresh = start == 0
    if fresh and path.exists():
        for child in path.iterdir():
            if child.is_file():
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    index = tantivy.Index(_schema(tokenizer), str(path), reuse=not fresh)
    _register(index, tokenizer)
    writer = index.writer(heap_size=heap_mb * 1_000_000, num_threads=threads)
    if not fresh:
        writer.delete_documents_by_query(tantivy.Query.range_query(
            index.schema, "row", tantivy.FieldType.Unsigned, start, 2**63 - 1))
        writer.commit()
    return writer


def _add_batch(writer, batch, start: int) -> None:
    titles, texts = batch.column(1).to_pylist(), batch.column(2).to_pylist()
    for r, title, text in zip(batch.column(0).to_pylist(), titles, texts):
        if r < start:
            continue
        doc = tantivy.Document()
        doc.add_text("body", f"{title}\n{text}" if title else text)
        doc.add_unsigned("row", r)
        writer.add_document(doc)


def build_bm25(corpus: str | Path, path: str | Path, *, tokenizer: str = "en_stem_stop",
               commit_rows: int = 50_000, heap_mb: int = 256, threads: int = 0,
               progress: Callable[[int], None] | None = None) -> dict:
    """Index ``corpus.parquet`` into ``path``; resumes after a crash without duplicating work.

    Every ``commit_rows`` documents are committed and the committed row count is recorded.
    A restart first deletes any documents past that mark (added after the last recorded
    commit), then continues from it. Returns ``{"docs", "resumed_from", "skipped"}``.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"bm25 tokenizer {tokenizer!r}: expected one of {TOKENIZERS}")
    path = Path(path)
    corpus_file = pq.ParquetFile(corpus)
    total = corpus_file.metadata.num_rows
    state = _saved_state(path, {"rows": total, "tokenizer": tokenizer,
                                "corpus_size": os.path.getsize(corpus)})
    if state["complete"]:
        return {"docs": total, "resumed_from": total, "skipped": True}
    start = done = state["committed_rows"]
    writer = _open_writer(path, tokenizer, start, heap_mb, threads)
    for batch in corpus_file.iter_batches(batch_size=8192, columns=["row", "title", "text"]):
        rows = batch.column(0).to_numpy()
        if rows[-1] < start:
            continue
        _add_batch(writer, batch, start)
        done = int(rows[-1]) + 1
        if progress:
            progress(done - max(start, int(rows[0])))
        if done - state["committed_rows"] >= commit_rows:
            writer.commit()
            state["committed_rows"] = done
            _write_state(path, state)
    writer.commit()
    writer.wait_merging_threads()
    state.update(committed_rows=done, complete=True)
    _write_state(path, state)
    return {"docs": total, "resumed_from": start, "skipped": False}


class BM25Searcher:
    """Top-k BM25 search; ``search`` runs queries on a thread pool (Tantivy releases the GIL)."""

    def __init__(self, path: str | Path, *, threads: int = 2):
        path = Path(path)
        state_file = path / _STATE
        if not state_file.exists() or not json.loads(state_file.read_text()).get("complete"):
            raise FileNotFoundError(f"{path}: no complete BM25 index (run `zelo index`)")
        tokenizer = json.loads(state_file.read_text())["fingerprint"]["tokenizer"]
        self.index = tantivy.Index.open(str(path))
        _register(self.index, tokenizer)
        self.analyzer = analyzer(tokenizer)
        self.searcher = self.index.searcher()
        self.pool = ThreadPoolExecutor(max(1, threads)) if threads > 1 else None

    def query(self, text: str) -> tantivy.Query | None:
        """A disjunction of ``text``'s analyzed terms (None when nothing is left to search)."""
        terms = query_terms(text, self.analyzer)
        if not terms:
            return None
        schema = self.index.schema
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", t, index_option="freq"))
             for t in terms])

    def _one(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = self.query(text)
        if query is None:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        hits = self.searcher.search(query, k, count=False).hits
        if not hits:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        scores = np.fromiter((h[0] for h in hits), np.float32, len(hits))
        rows = np.asarray(self.searcher.fast_field_values("row", [h[1] for h in hits]), np.int64)
        return rows, scores

    def search(self, texts: Sequence[str], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (corpus rows, BM25 scores), best first, at most ``k``."""
        if self.pool is None:
            return [self._one(t, k) for t in texts]
        return list(self.pool.map(lambda t: self._one(t, k), texts))
