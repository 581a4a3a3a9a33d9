"""Rerank first-stage candidates with a trained checkpoint.

Each query's top-``depth`` hybrid candidates are scored by the model and reordered; candidates
below ``depth`` keep their first-stage order beneath them (so Recall@100 is unchanged and
nDCG@10 measures the reranker alone).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from zelo_ray.faults import ErrorLog, FaultInjector
from zelo_ray.ticker import Ticker
from zelo_ray.data.texts import doc_texts, query_texts
from zelo_ray.scoring.kinds import CARD
from zelo_ray.scoring.onnx_reranker import load_scorer
from zelo_ray.scoring.scorer import QueryScorer, query_rows

__all__ = ["checkpoint_max_length", "rankings_from_reranked", "rerank_candidates"]


def checkpoint_max_length(checkpoint: str, override: int | None) -> int:
    """The token budget a checkpoint is evaluated with: ``override``, else what it trained with."""
    if override:
        return override
    card = Path(checkpoint) / CARD
    if card.exists():
        return int(json.loads(card.read_text()).get("train_config", {}).get("max_length", 256))
    return 256


def _query_chunks(rows: pa.Table, step: int):
    """Slices of query rows holding about ``step`` documents each (a query is never split)."""
    sizes = pc.list_value_length(rows["doc_ids"]).to_numpy(zero_copy_only=False)
    start, acc = 0, 0
    for i, n in enumerate(sizes):
        acc += int(n)
        if acc >= step:
            yield rows.slice(start, i + 1 - start)
            start, acc = i + 1, 0
    if start < rows.num_rows:
        yield rows.slice(start)


def rerank_candidates(col, candidates: str | Path, checkpoint: str, queries: list[str], *, depth: int,
                      batch_size: int = 64, max_length: int | None = None, out: str | Path | None = None,
                      log=print, model=None, errors: ErrorLog | None = None,
                      injector: FaultInjector | None = None, fusion: bool = True, pool=None,
                      backend: str = "torch") -> pa.Table:
    """``query_id, doc_id, rank, score, model_score`` (rank 1 = best) for ``queries``; written to
    ``out`` if given. ``score`` is the served function (the checkpoint's fusion with BM25, when it
    has one and ``fusion``), ``model_score`` the model's σ(logit) alone; ranks follow ``score``.

    ``pool``: score in a Ray Data actor pool (:class:`ScorerPool`, whose config names the
    backend) instead of this process; ``backend``: how this process scores (torch, onnx, onnx-int8).
    With ``errors``, a query whose scoring raises is listed there and left out of the result
    (the caller decides what a missing query means); without, it raises."""
    t = _candidates(candidates, queries)
    top = t.filter(pc.less_equal(t["rank"], depth))
    qids, dids = top["query_id"].to_pylist(), top["doc_id"].to_pylist()
    rows = query_rows(qids, dids, query_texts(col), doc_texts(col, dids))
    ml = checkpoint_max_length(checkpoint, max_length)
    inject = sorted(f"rerank:{i}" for i in injector.ids) if injector is not None else []
    if pool is not None and rows.num_rows:
        scored = pool.run(rows, checkpoint, max_length=ml, batch_size=batch_size, fusion=fusion, inject=inject)
    else:
        scorer = QueryScorer(checkpoint, max_length=ml, batch_size=batch_size, fusion=fusion, inject=inject,
                             model=model or (load_scorer(checkpoint, backend=backend) if rows.num_rows else None))
        scored = (scorer(chunk) for chunk in _query_chunks(rows, max(batch_size, 1024)))
    score_of, model_of = _collect(scored, rows, len(dids), errors, log)
    out_t = _ranked(t, depth, score_of, model_of, failed=set(qids) - {q for q, _ in score_of})
    if out is not None:
        import pyarrow.parquet as pq

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(out_t, str(out) + ".tmp")
        Path(str(out) + ".tmp").replace(out)
    return out_t


def _candidates(candidates: str | Path, queries: list[str]) -> pa.Table:
    """The queries' ranked candidates, sorted by query then first-stage rank."""
    t = pads.dataset(str(candidates), format="parquet").to_table(
        columns=["query_id", "doc_id", "rank"], filter=pc.field("query_id").isin(pa.array(queries, pa.string())))
    t = t.filter(pc.is_valid(t["rank"]))
    return t.sort_by([("query_id", "ascending"), ("rank", "ascending")])


def _collect(scored, rows: pa.Table, n_pairs: int, errors: ErrorLog | None, log):
    """(served score, model score) per (query, document) from the scored parts, as they come;
    a failed query goes to ``errors`` (or raises without)."""
    score_of: dict[tuple[str, str], float] = {}
    model_of: dict[tuple[str, str], float] = {}
    done, ticker = 0, Ticker(n_pairs)
    docs_of = dict(zip(rows["query_id"].to_pylist(), rows["doc_ids"].to_pylist()))
    for part in scored:
        bad = part.filter(pc.is_valid(part["error"]))
        if bad.num_rows:
            if errors is None:
                raise RuntimeError(f"rerank: query {bad['query_id'][0].as_py()!r} failed: "
                                   f"{bad['error_type'][0].as_py()}: {bad['error'][0].as_py()}")
            errors.record_reported(*(bad[c].to_pylist() for c in ("query_id", "error_type", "error", "traceback")))
        for q, s, p in zip(part["query_id"].to_pylist(), part["served"].to_pylist(), part["model"].to_pylist()):
            if s is None:
                continue
            keys = [(q, d) for d in docs_of[q]]
            score_of.update(zip(keys, s))
            model_of.update(zip(keys, p))
            done += len(keys)
        if ticker.due(done):
            log(f"      reranked {done:,}/{n_pairs:,} pairs ({ticker.rate(done):.1f} pairs/s, {ticker.eta(done)})")
    return score_of, model_of


def _ranked(t: pa.Table, depth: int, score_of: dict, model_of: dict, failed: set) -> pa.Table:
    """Each (not failed) query's head re-ordered by the served score (ties keep first-stage order),
    the tail below ``depth`` after it in first-stage order."""
    rows_q, rows_d, rows_r, rows_s, rows_m = [], [], [], [], []
    all_q, all_d, all_r = t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["rank"].to_pylist()
    start = 0
    while start < len(all_q):
        end = start
        while end < len(all_q) and all_q[end] == all_q[start]:
            end += 1
        q = all_q[start]
        if q in failed:
            start = end
            continue
        head = [(d, score_of[(q, d)]) for d, r in zip(all_d[start:end], all_r[start:end]) if r <= depth]
        tail = [d for d, r in zip(all_d[start:end], all_r[start:end]) if r > depth]
        head.sort(key=lambda x: -x[1])  # stable: ties keep first-stage order
        for i, (d, sc) in enumerate(head + [(d, None) for d in tail]):
            rows_q.append(q), rows_d.append(d), rows_r.append(i + 1), rows_s.append(sc)
            rows_m.append(model_of.get((q, d)))
        start = end
    return pa.table({"query_id": pa.array(rows_q, pa.string()), "doc_id": pa.array(rows_d, pa.string()),
                     "rank": pa.array(rows_r, pa.int32()), "score": pa.array(rows_s, pa.float32()),
                     "model_score": pa.array(rows_m, pa.float32())})


def rankings_from_reranked(table: pa.Table, by: str = "rank") -> dict[str, list[str]]:
    """``{query_id: [doc_id, ...]}`` in served order (``by="rank"``), or with the reranked head
    reordered by another score column (``"model_score"``: the model alone); the unreranked tail
    keeps its place."""
    t = table.sort_by([("query_id", "ascending"), ("rank", "ascending")])
    runs: dict[str, list[tuple[str, float | None]]] = {}
    col = [None] * t.num_rows if by == "rank" else t[by].to_pylist()
    for q, d, s in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), col):
        runs.setdefault(q, []).append((d, s))
    out = {}
    for q, rows in runs.items():
        head = [r for r in rows if r[1] is not None]
        head.sort(key=lambda r: -r[1])  # stable: ties keep the served order
        out[q] = [d for d, _ in head] + [d for d, s in rows if s is None]
    return out
