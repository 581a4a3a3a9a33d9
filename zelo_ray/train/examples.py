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

from zelo_ray.data.texts import doc_texts, query_texts
from zelo_ray.faults import ErrorLog, FaultInjector

__all__ = ["EXAMPLES_SCHEMA", "build_groups", "write_groups"]

EXAMPLES_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()),
    ("doc_ids", pa.list_(pa.string())), ("docs", pa.list_(pa.string())),
    ("targets", pa.list_(pa.float32())), ("elo", pa.list_(pa.float32())),
])


def build_groups(zelo: pa.Table, queries: dict[str, str], docs: dict[str, str], *, group_size: int,
                 candidates_per_query: int | None, seed: int, target: str = "target",
                 errors: ErrorLog | None = None, injector: FaultInjector | None = None) -> pa.Table:
    """Query groups (``EXAMPLES_SCHEMA``) from a zELO table (``query_id, doc_id, rank, elo, target``).

    With ``errors``, a query whose groups cannot be built (its text or a document's is missing)
    is listed there and left out; without, it raises. :func:`write_groups` writes the same table
    without holding it (or every document's text) in memory."""
    rng = np.random.default_rng(seed)
    table = _unshuffled_groups(zelo, queries, docs, group_size=group_size, candidates_per_query=candidates_per_query,
                               rng=rng, target=target, errors=errors, injector=injector)
    # shuffle groups across queries so a batch mixes queries
    return table.take(pa.array(rng.permutation(table.num_rows))) if table.num_rows else table


def write_groups(zelo: pa.Table, col, path: str | Path, *, group_size: int, candidates_per_query: int | None,
                 seed: int, target: str = "target", errors: ErrorLog | None = None,
                 injector: FaultInjector | None = None, chunk_queries: int = 5_000,
                 rows_per_write: int = 4096) -> Path:
    """:func:`build_groups` of ``zelo`` with ``col``'s texts, written to ``path`` — the same rows
    in the same order — while holding only ``chunk_queries`` queries' document texts at a time.

    The groups are drawn chunk by chunk with one random stream (so every query gets the draws it
    gets in one pass) into an uncompressed Arrow file; the final cross-query shuffle then reads
    that file memory-mapped, a slice of the permutation at a time, so the pages it touches are
    the file's, not the process's own memory."""
    missing = {"query_id", "doc_id", "rank", target} - set(zelo.column_names)
    if missing:
        raise ValueError(f"zELO table lacks columns {sorted(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    qid = zelo["query_id"].to_numpy(zero_copy_only=False)
    order = np.argsort(qid, kind="stable")
    zelo, qid = zelo.take(pa.array(order)), qid[order]
    starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]]) if len(qid) else np.array([], int)
    bounds = [*starts[::chunk_queries].tolist(), len(qid)]
    queries = query_texts(col)
    staged = path.with_name(f".{path.name}.groups.arrow")
    n = 0
    with pa.OSFile(str(staged), "wb") as sink, pa.ipc.new_file(sink, EXAMPLES_SCHEMA) as writer:
        for a, b in zip(bounds[:-1], bounds[1:]):
            chunk = zelo.slice(a, b - a)
            docs = doc_texts(col, chunk["doc_id"].to_pylist())
            groups = _unshuffled_groups(chunk, queries, docs, group_size=group_size,
                                        candidates_per_query=candidates_per_query, rng=rng, target=target,
                                        errors=errors, injector=injector)
            writer.write_table(groups)
            n += groups.num_rows
    perm = rng.permutation(n)
    tmp = path.with_suffix(".tmp")
    try:
        with pa.memory_map(str(staged)) as source:
            reader = pa.ipc.open_file(source)
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            with pq.ParquetWriter(tmp, EXAMPLES_SCHEMA) as out:
                for i in range(0, n, rows_per_write):
                    out.write_table(_take(batches, perm[i:i + rows_per_write]))
                if n == 0:
                    out.write_table(EXAMPLES_SCHEMA.empty_table())
            del batches
        tmp.replace(path)
    finally:
        staged.unlink(missing_ok=True)
    return path


def _take(batches: list[pa.RecordBatch], idx: np.ndarray) -> pa.Table:
    """Rows ``idx`` (global positions) of the concatenation of ``batches``, in that order, taken
    batch by batch: a take over a chunked table would first copy every chunk into one array."""
    offsets = np.cumsum([0] + [b.num_rows for b in batches])
    which = np.searchsorted(offsets, idx, side="right") - 1
    parts, order = [], []
    for b in np.unique(which):
        sel = np.flatnonzero(which == b)
        parts.append(batches[b].take(pa.array(idx[sel] - offsets[b])))
        order.append(sel)
    table = pa.Table.from_batches(parts, schema=EXAMPLES_SCHEMA)
    return table.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


def _unshuffled_groups(zelo: pa.Table, queries: dict[str, str], docs: dict[str, str], *, group_size: int,
                       candidates_per_query: int | None, rng: np.random.Generator, target: str,
                       errors: ErrorLog | None, injector: FaultInjector | None) -> pa.Table:
    """The groups of ``zelo``'s queries in query order, drawing from ``rng`` query by query."""
    missing = {"query_id", "doc_id", "rank", target} - set(zelo.column_names)
    if missing:
        raise ValueError(f"zELO table lacks columns {sorted(missing)}")
    if candidates_per_query is not None:
        zelo = zelo.filter(pc.less_equal(zelo["rank"], candidates_per_query))
    elo_col = "calibrated" if "calibrated" in zelo.column_names else "elo"
    zelo = zelo.filter(pc.is_valid(zelo[target]))
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
    return pa.table(cols, schema=EXAMPLES_SCHEMA)


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
