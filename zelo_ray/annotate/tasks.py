"""Judge calls of a run: every (pair, judge), its A/B order and its cache key.

The order of a call is a function of (run seed, pair id, judge name) and the cache key a hash
of (judge model, prompt version, question kind, the texts in the order shown): two calls with
the same key are the same request, so its stored answer is reused — across re-runs, across
configs that share pairs, and between pairs whose documents have identical text.

The simulated judge answers from hidden relevance attached to ids, not from texts, so its keys
hash ids instead of texts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.judges.keys import combine, string_hash, swap_bits, to_signed, uniforms
from zelo_ray.judges.factory import prompt_version

__all__ = ["bucket_texts", "TextHashes", "calls_table", "build_tasks", "TASK_COLUMNS"]

TASK_COLUMNS = ["pair_id", "kind", "probe", "query_id", "query_b", "doc_a", "doc_b", "judge",
                "swapped", "cache_key"]


@dataclass
class TextHashes:
    """64-bit hashes of query and document texts, by id."""

    query_ids: pa.Array
    query_hash: np.ndarray
    doc_ids: pa.Array
    doc_hash: np.ndarray

    def queries(self, ids: pa.Array) -> np.ndarray:
        return self._lookup(ids, self.query_ids, self.query_hash, "query")

    def docs(self, ids: pa.Array) -> np.ndarray:
        return self._lookup(ids, self.doc_ids, self.doc_hash, "document")

    @staticmethod
    def _lookup(ids, keys, values, what) -> np.ndarray:
        idx = pc.index_in(ids, value_set=keys)
        if idx.null_count:
            bad = ids.filter(pc.is_null(idx))[0].as_py()
            raise KeyError(f"no text for {what} id {bad!r}")
        return values[idx.to_numpy()]


def _id_hashes(ids: pa.Array) -> np.ndarray:
    uniq = pc.unique(ids)
    h = np.fromiter((string_hash(x) for x in uniq.to_pylist()), dtype=np.uint64, count=len(uniq))
    return h[pc.index_in(ids, value_set=uniq).to_numpy()]


def calls_table(pairs: pa.Table, cross: pa.Table) -> pa.Table:
    """Within-query and cross-query pairs in one table: ``query_b`` is null for within pairs."""
    n = pairs.num_rows
    within = pa.table({"pair_id": pairs["pair_id"], "kind": pa.array(["within"] * n, pa.string()),
                       "query_id": pairs["query_id"], "query_b": pa.nulls(n, pa.string()),
                       "doc_a": pairs["doc_a"], "doc_b": pairs["doc_b"]})
    m = cross.num_rows
    across = pa.table({"pair_id": cross["pair_id"], "kind": pa.array(["cross"] * m, pa.string()),
                       "query_id": cross["query_id"], "query_b": cross["query_b"],
                       "doc_a": cross["doc_a"], "doc_b": cross["doc_b"]})
    return pa.concat_tables([within, across])


def build_tasks(items: pa.Table, judges: list, *, seed: int, swap_probe: float = 0.0,
                text_hashes: TextHashes | None = None,
                relevance: Callable[[pa.Array, pa.Array], np.ndarray] | None = None,
                rows: dict[str, np.ndarray] | None = None) -> pa.Table:
    """One row per judge call (plus position-bias probes), with ``rel_a, rel_b`` when
    ``relevance`` is given (simulated judges). ``rows``: per judge name, the ascending rows of
    ``items`` it is asked about (the SLM loop's routing); None: every judge, every row."""
    n = items.num_rows
    qb_filled = pc.coalesce(items["query_b"], items["query_id"])
    kind_h = np.where(pc.equal(items["kind"], "cross").to_numpy(zero_copy_only=False),
                      string_hash("cross"), string_hash("within")).astype(np.uint64)
    id_h = None
    content_h = None
    if any(j.simulated for j in judges):
        id_h = (_id_hashes(items["query_id"]), _id_hashes(items["doc_a"]),
                _id_hashes(qb_filled), _id_hashes(items["doc_b"]))
    if any(not j.simulated for j in judges):
        if text_hashes is None:
            raise ValueError("LLM judges need the texts of queries and documents")
        content_h = (text_hashes.queries(items["query_id"]), text_hashes.docs(items["doc_a"]),
                     text_hashes.queries(qb_filled), text_hashes.docs(items["doc_b"]))
    pair_id = items["pair_id"].to_numpy()
    within = ~pc.equal(items["kind"], "cross").to_numpy(zero_copy_only=False)
    probe_rows = np.flatnonzero(within & (uniforms(pair_id, 77) < swap_probe)) if swap_probe else np.empty(0, int)
    pieces = []
    for j in judges:
        qa, da, qb, db = id_h if j.simulated else content_h
        model_h = string_hash(f"{j.kind}:{j.model}")
        prompt_h = string_hash(prompt_version(j))
        mine = np.arange(n) if rows is None else rows[j.name]
        for probe, rows_j in ((False, mine), (True, np.intersect1d(probe_rows, mine, assume_unique=True))):
            if not len(rows_j):
                continue
            swapped = swap_bits(seed, pair_id[rows_j], j.name)
            if probe:
                swapped = ~swapped
            f_q = np.where(swapped, qb[rows_j], qa[rows_j])
            f_d = np.where(swapped, db[rows_j], da[rows_j])
            s_q = np.where(swapped, qa[rows_j], qb[rows_j])
            s_d = np.where(swapped, da[rows_j], db[rows_j])
            key = to_signed(combine(model_h, prompt_h, kind_h[rows_j], f_q, f_d, s_q, s_d))
            t = items.take(pa.array(rows_j))
            t = t.append_column("probe", pa.array(np.full(len(rows_j), probe)))
            t = t.append_column("judge", pa.array([j.name] * len(rows_j), pa.string()))
            t = t.append_column("swapped", pa.array(swapped))
            t = t.append_column("cache_key", pa.array(key))
            pieces.append(t.select(TASK_COLUMNS))
    tasks = pa.concat_tables(pieces)
    if relevance is not None:
        qb_all = pc.coalesce(tasks["query_b"], tasks["query_id"])
        tasks = tasks.append_column("rel_a", pa.array(relevance(tasks["query_id"], tasks["doc_a"])))
        tasks = tasks.append_column("rel_b", pa.array(relevance(qb_all, tasks["doc_b"])))
    return tasks


def bucket_texts(run, nodes: pa.Table, cross: pa.Table):
    """The texts LLM judges read (title + text, as shown) and their hashes (cache keys): a
    bucket's candidates (``nodes``) and the other queries' documents of its ``cross`` pairs.
    ``run``: the stage's inputs (its collection, query texts and query hashes)."""
    import pyarrow.parquet as pq

    from zelo_ray.judges.caller import TextTable, shown_doc
    from zelo_ray.judges.keys import text_hashes

    need_docs = pc.unique(pa.concat_arrays([nodes["doc_id"].combine_chunks(), cross["doc_b"].combine_chunks()]))
    corpus = pq.read_table(run.collection.corpus_path, columns=["doc_id", "title", "text"],
                           filters=[("doc_id", "in", need_docs.to_pylist())])
    shown = [shown_doc(t, x) for t, x in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())]
    texts = TextTable(queries=run.query_texts, docs=dict(zip(corpus["doc_id"].to_pylist(), shown)))
    query_ids, query_hash = run.query_hashes
    hashes = TextHashes(query_ids=query_ids, query_hash=query_hash,
                        doc_ids=corpus["doc_id"].combine_chunks(), doc_hash=text_hashes(shown))
    return texts, hashes
