"""Training rows from the annotation stage's ``zelo.parquet`` joined with query and document text.

A row is one *query group*: a query and ``group_size`` of its judged candidates with their zELO
targets and calibrated Elo scores. Pointwise losses flatten the groups; pairwise and listwise
losses compare documents inside a group. Groups are drawn with a seeded shuffle, so a run is
reproducible and a resumed run sees the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.faults import ErrorLog, FaultInjector

__all__ = ["EXAMPLES_SCHEMA", "build_groups", "doc_texts", "query_texts"]

EXAMPLES_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()),
    ("doc_ids", pa.list_(pa.string())), ("docs", pa.list_(pa.string())),
    ("targets", pa.list_(pa.float32())), ("elo", pa.list_(pa.float32())),
])


def doc_texts(col, doc_ids: list[str]) -> dict[str, str]:
    """``doc_id → "title. text"`` for the given documents (the text a reranker reads)."""
    if not doc_ids:
        return {}
    t = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"],
                      filters=[("doc_id", "in", sorted(set(doc_ids)))])
    return {d: (f"{ti}. {tx}" if ti else tx)
            for d, ti, tx in zip(t["doc_id"].to_pylist(), t["title"].to_pylist(), t["text"].to_pylist())}


def query_texts(col) -> dict[str, str]:
    q = col.queries()
    return dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))


def build_groups(zelo: pa.Table, queries: dict[str, str], docs: dict[str, str], *, group_size: int,
                 candidates_per_query: int | None, seed: int, target: str = "target",
                 errors: ErrorLog | None = None, injector: FaultInjector | None = None) -> pa.Table:
    """Query groups (``EXAMPLES_SCHEMA``) from a zELO table (``query_id, doc_id, rank, elo, target``).

    With ``errors``, a query whose groups cannot be built (its text or a document's is missing)
    is listed there and left out; without, it raises."""
    missing = {"query_id", "doc_id", "rank", target} - set(zelo.column_names)
    if missing:
        raise ValueError(f"zELO table lacks columns {sorted(missing)}")
    if candidates_per_query is not None:
        zelo = zelo.filter(pc.less_equal(zelo["rank"], candidates_per_query))
    elo_col = "calibrated" if "calibrated" in zelo.column_names else "elo"
    zelo = zelo.filter(pc.is_valid(zelo[target]))
    rng = np.random.default_rng(seed)
    qid = zelo["query_id"].to_numpy(zero_copy_only=False)
    order = np.argsort(qid, kind="stable")
    qid = qid[order]
    did = zelo["doc_id"].to_numpy(zero_copy_only=False)[order]
    tgt = zelo[target].to_numpy(zero_copy_only=False).astype(np.float32)[order]
    elo = zelo[elo_col].to_numpy(zero_copy_only=False).astype(np.float32)[order]
    cols = {k: [] for k in EXAMPLES_SCHEMA.names}
    starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]]) if len(qid) else np.array([], int)
    ends = np.r_[starts[1:], len(qid)]
    failed_ids, failed = [], []
    for s, e in zip(starts, ends):
        q = str(qid[s])
        perm = s + rng.permutation(e - s)  # drawn for every query, so one failure moves no other's groups
        try:
            if injector is not None:
                injector.check([q])
            groups = _query_groups(q, perm, did, tgt, elo, queries, docs, group_size)
        except Exception as exc:  # noqa: BLE001 - one query's failure is recorded, not fatal
            if errors is None:
                raise
            failed_ids.append(q)
            failed.append(exc)
            continue
        for g in groups:
            for k, v in g.items():
                cols[k].append(v)
    if errors is not None:
        errors.record(failed_ids, failed)
    table = pa.table(cols, schema=EXAMPLES_SCHEMA)
    # shuffle groups across queries so a batch mixes queries
    return table.take(pa.array(rng.permutation(table.num_rows))) if table.num_rows else table


def _query_groups(q: str, perm: np.ndarray, did, tgt, elo, queries: dict[str, str], docs: dict[str, str],
                  group_size: int) -> list[dict]:
    if q not in queries:
        raise ValueError(f"query {q!r} of the zELO table is not in the collection's queries")
    out = []
    for g in range(0, len(perm), group_size):
        idx = perm[g:g + group_size]
        ids = [str(d) for d in did[idx]]
        absent = [d for d in ids if d not in docs]
        if absent:
            raise ValueError(f"query {q!r}: document {absent[0]!r} is not in the corpus")
        out.append({"query_id": q, "query": queries[q], "doc_ids": ids, "docs": [docs[d] for d in ids],
                    "targets": tgt[idx].tolist(), "elo": elo[idx].tolist()})
    return out


def write_examples(table: pa.Table, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path
