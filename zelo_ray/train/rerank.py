"""Rerank first-stage candidates with a trained checkpoint.

Each query's top-``depth`` hybrid candidates are scored by the model and reordered; candidates
below ``depth`` keep their first-stage order beneath them (so Recall@100 is unchanged and
nDCG@10 measures the reranker alone).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from zelo_ray.faults import ErrorLog, FaultInjector, isolate
from zelo_ray.train.examples import doc_texts, query_texts
from zelo_ray.train.models import CARD, load_reranker

__all__ = ["rerank_candidates", "rankings_from_reranked"]


def _max_length(checkpoint: str, override: int | None) -> int:
    if override:
        return override
    card = Path(checkpoint) / CARD
    if card.exists():
        return int(json.loads(card.read_text()).get("train_config", {}).get("max_length", 256))
    return 256


def _query_chunks(qids: list[str], step: int) -> list[list[tuple[str, int, int]]]:
    """``(query_id, start, stop)`` spans of consecutive rows, grouped into chunks of about
    ``step`` rows that never split a query (a failure is then one query's, not a chunk's)."""
    chunks, chunk, rows, start = [], [], 0, 0
    for i in range(1, len(qids) + 1):
        if i == len(qids) or qids[i] != qids[start]:
            chunk.append((qids[start], start, i))
            rows += i - start
            start = i
            if rows >= step:
                chunks.append(chunk)
                chunk, rows = [], 0
    if chunk:
        chunks.append(chunk)
    return chunks


def rerank_candidates(col, candidates: str | Path, checkpoint: str, queries: list[str], *, depth: int,
                      batch_size: int = 64, max_length: int | None = None, out: str | Path | None = None,
                      log=print, model=None, errors: ErrorLog | None = None,
                      injector: FaultInjector | None = None) -> pa.Table:
    """``query_id, doc_id, rank, score`` (rank 1 = best) for ``queries``; written to ``out`` if given.

    With ``errors``, a query whose scoring raises is listed there and left out of the result
    (the caller decides what a missing query means); without, it raises."""
    import torch

    ds = pads.dataset(str(candidates), format="parquet")
    t = ds.to_table(columns=["query_id", "doc_id", "rank"],
                    filter=pc.field("query_id").isin(pa.array(queries, pa.string())))
    t = t.filter(pc.is_valid(t["rank"])).sort_by([("query_id", "ascending"), ("rank", "ascending")])
    top = t.filter(pc.less_equal(t["rank"], depth))
    qtext = query_texts(col)
    dtext = doc_texts(col, top["doc_id"].to_pylist())
    model = model or (load_reranker(checkpoint) if top.num_rows else None)
    ml = _max_length(checkpoint, max_length)
    qids, dids = top["query_id"].to_pylist(), top["doc_id"].to_pylist()

    def score_spans(spans: list[tuple[str, int, int]]) -> list[tuple[str, np.ndarray]]:
        if injector is not None:
            injector.check([q for q, _, _ in spans])
        rows = [i for _, a, b in spans for i in range(a, b)]
        if not rows:
            return []
        with torch.inference_mode():
            s = model.score([qtext[qids[i]] for i in rows], [dtext[dids[i]] for i in rows],
                            max_length=ml, batch_size=batch_size).numpy()
        bounds = np.cumsum([0] + [b - a for _, a, b in spans])
        return [(q, s[bounds[k]:bounds[k + 1]]) for k, (q, _, _) in enumerate(spans)]

    t0 = time.perf_counter()
    score_of: dict[tuple[str, str], float] = {}
    done = 0
    step = max(batch_size, 1024)
    for chunk in _query_chunks(qids, step):
        if errors is None:
            scored = score_spans(chunk)
        else:
            scored = isolate(score_spans, chunk, lambda spans: [q for q, _, _ in spans], errors)
        spans = {q: (a, b) for q, a, b in chunk}
        for q, s in scored:
            a, b = spans[q]
            score_of.update(zip(zip(qids[a:b], dids[a:b]), s.tolist()))
        done += sum(b - a for _, a, b in chunk)
        log(f"      reranked {done:,}/{len(dids):,} pairs ({done / max(time.perf_counter() - t0, 1e-9):.1f} pairs/s)")
    failed = set(qids) - {q for q, _ in score_of}
    rows_q, rows_d, rows_r, rows_s = [], [], [], []
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
        start = end
    out_t = pa.table({"query_id": pa.array(rows_q, pa.string()), "doc_id": pa.array(rows_d, pa.string()),
                      "rank": pa.array(rows_r, pa.int32()), "score": pa.array(rows_s, pa.float32())})
    if out is not None:
        import pyarrow.parquet as pq

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(out_t, str(out) + ".tmp")
        Path(str(out) + ".tmp").replace(out)
    return out_t


def rankings_from_reranked(table: pa.Table) -> dict[str, list[str]]:
    t = table.sort_by([("query_id", "ascending"), ("rank", "ascending")])
    runs: dict[str, list[str]] = {}
    for q, d in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist()):
        runs.setdefault(q, []).append(d)
    return runs
