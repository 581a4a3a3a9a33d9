"""BM25 computed from a collection's term statistics, without the index.

A reranker that keeps lexical evidence must score BM25 for whatever documents a rerank call
sends, in a process that has no Tantivy index: the statistics BM25 needs (number of documents,
average length, each term's document frequency) are gathered once from the corpus with the
index's own analyzer and travel with the checkpoint. Scores follow Lucene/Tantivy's BM25
(k1 = 1.2, b = 0.75, idf = ln(1 + (N − df + 0.5) / (df + 0.5))) over title + text; lengths are
exact rather than Tantivy's one-byte field norms, so values differ from the index's by a little.

Example::

    >>> import pyarrow as pa
    >>> from zelo_ray.retrieval.lexical import TermStats
    >>> stats = TermStats.from_texts(["wing lift", "lift and drag", "boundary layer"], "en_stem_stop")
    >>> s = stats.scores("lift", ["the lift of a wing", "boundary layer"])
    >>> bool(s[0] > 0 and s[1] == 0)
    True
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.retrieval.bm25 import analyzer

__all__ = ["STATS_FILE", "TermStats"]

STATS_FILE = "bm25_stats.json"
DF_FILE = "bm25_df.parquet"


@dataclass
class TermStats:
    """What BM25 needs from a corpus; ``scores(query, docs)`` scores any documents with it."""

    tokenizer: str
    n_docs: int
    avgdl: float
    df: dict[str, int] = field(repr=False)
    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self):
        self._analyze = analyzer(self.tokenizer)

    @classmethod
    def from_texts(cls, texts: Iterable[str], tokenizer: str, *, log=None, every: int = 100_000) -> "TermStats":
        analyze = analyzer(tokenizer)
        df: Counter = Counter()
        n = total = 0
        for text in texts:
            terms = analyze.analyze(text)
            df.update(set(terms))
            n += 1
            total += len(terms)
            if log is not None and n % every == 0:
                log(f"      BM25 statistics: {n:,} documents read")
        return cls(tokenizer, n, total / n if n else 0.0, dict(df))

    @classmethod
    def from_corpus(cls, corpus: str | Path, tokenizer: str, *, log=None) -> "TermStats":
        """Statistics of a prepared ``corpus.parquet``, each document read as the index reads it."""
        def texts():
            for batch in pq.ParquetFile(corpus).iter_batches(batch_size=8192, columns=["title", "text"]):
                for title, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                    yield f"{title}\n{text}" if title else (text or "")
        return cls.from_texts(texts(), tokenizer, log=log)

    def idf(self, term: str) -> float:
        d = self.df.get(term, 0)
        return math.log(1.0 + (self.n_docs - d + 0.5) / (d + 0.5))

    def scores(self, query: str, docs: list[str]) -> np.ndarray:
        """BM25 of each document for ``query`` (repeated query terms count again, as in the index)."""
        q = Counter(self._analyze.analyze(query))
        out = np.zeros(len(docs), np.float64)
        if not q or not docs:
            return out
        idf = {t: self.idf(t) for t in q}
        norm = self.avgdl if self.avgdl > 0 else 1.0
        for i, doc in enumerate(docs):
            terms = self._analyze.analyze(doc)
            tf = Counter(terms)
            k = self.k1 * (1 - self.b + self.b * len(terms) / norm)
            out[i] = sum(qtf * idf[t] * tf[t] * (self.k1 + 1) / (tf[t] + k) for t, qtf in q.items() if t in tf)
        return out

    # -- persistence (inside a checkpoint folder) -------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        terms = sorted(self.df)
        pq.write_table(pa.table({"term": pa.array(terms, pa.string()),
                                 "df": pa.array([self.df[t] for t in terms], pa.int64())}), folder / DF_FILE)
        (folder / STATS_FILE).write_text(json.dumps({"tokenizer": self.tokenizer, "n_docs": self.n_docs,
                                                     "avgdl": self.avgdl, "k1": self.k1, "b": self.b,
                                                     "terms": len(terms)}, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "TermStats":
        folder = Path(folder)
        meta = json.loads((folder / STATS_FILE).read_text())
        t = pq.read_table(folder / DF_FILE)
        if t.num_rows != meta.get("terms", t.num_rows):
            raise ValueError(f"{folder / DF_FILE}: {t.num_rows} terms, {folder / STATS_FILE} says {meta['terms']}")
        return cls(meta["tokenizer"], int(meta["n_docs"]), float(meta["avgdl"]),
                   dict(zip(t["term"].to_pylist(), t["df"].to_pylist())), float(meta["k1"]), float(meta["b"]))

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / STATS_FILE).exists() and (Path(folder) / DF_FILE).exists()
