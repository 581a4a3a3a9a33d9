"""`zelo bench backend-quality`: what each inference backend does to a trained reranker's
quality (#32), on a finished run (the demo's by default).

The run's checkpoint reranks the top-``depth`` candidates of the run's test queries on each
backend, in this process, with the served function (the checkpoint's fusion with BM25, as the
evaluation's ``reranker`` row); nDCG@10 per query, and the paired bootstrap CI of each backend's
difference from torch's (and of each backend's gain over the hybrid first stage). Max |Δ| of the
model's own scores against torch is reported too.
"""

from __future__ import annotations

import time

import numpy as np

from zelo_ray.bench.common import machine

__all__ = ["run"]


def run(*, workdir: str = "runs/nfcorpus", backends: tuple[str, ...] = ("torch", "onnx", "onnx-int8"),
        log=print) -> dict:
    import pyarrow.parquet as pq

    from zelo_ray.config import load_config
    from zelo_ray.data import open_collection
    from zelo_ray.eval.metrics import bootstrap_ci, per_query_metrics
    from zelo_ray.eval.splits import query_split
    from zelo_ray.layout import layout_at
    from zelo_ray.scoring.rerank import rerank_candidates

    paths = layout_at(workdir)
    cfg = load_config(None, [f"data.workdir={workdir}"] + _dataset_of(paths.data))
    col = open_collection(paths.data)
    test = query_split(cfg, col)["test"]
    qrels = col.qrels(cfg.data.split)
    test = [q for q in test if q in qrels]
    ckpt = str(paths.train / "model")
    cand = pq.read_table(paths.candidates, columns=["query_id", "doc_id", "rank"])
    hybrid = _runs(cand, "rank", test, ascending=True)
    out = {"machine": machine(), "workdir": workdir, "checkpoint": ckpt, "queries": len(test),
           "depth": cfg.rerank.depth, "ndcg@10": {}, "seconds": {}}
    ndcg = {"hybrid": _ndcg(per_query_metrics, qrels, hybrid, test)}
    model = {}
    for b in backends:
        t = time.perf_counter()
        ranked = rerank_candidates(col, paths.candidates, ckpt, test, depth=cfg.rerank.depth,
                                   batch_size=cfg.rerank.batch_size, max_length=cfg.rerank.max_length,
                                   backend=b, log=lambda *_: None)
        out["seconds"][b] = round(time.perf_counter() - t, 2)
        ndcg[b] = _ndcg(per_query_metrics, qrels, _runs(ranked, "rank", test, ascending=True), test)
        key = [f"{q}\t{d}" for q, d in zip(ranked["query_id"].to_pylist(), ranked["doc_id"].to_pylist())]
        model[b] = dict(zip(key, ranked["model_score"].to_pylist()))
        log(f"{b}: nDCG@10 {ndcg[b].mean():.4f} ({out['seconds'][b]} s)")
    for name, v in ndcg.items():
        lo, hi = bootstrap_ci(v)[0]
        out["ndcg@10"][name] = {"mean": round(float(v.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    out["differences"] = {}
    for b in backends:
        for base in ("torch", "hybrid"):
            if b != base and base in ndcg:
                d = ndcg[b] - ndcg[base]
                lo, hi = bootstrap_ci(d)[0]
                out["differences"][f"{b} - {base}"] = {"delta": round(float(d.mean()), 4),
                                                       "ci95": [round(float(lo), 4), round(float(hi), 4)]}
        if b != "torch" and "torch" in model:
            both = [k for k in model[b] if k in model["torch"] and model[b][k] is not None]
            out["differences"][f"{b} - torch"]["max_abs_model_score_delta"] = round(float(max(
                abs(model[b][k] - model["torch"][k]) for k in both)), 6)
    return out


def _dataset_of(data_dir) -> list[str]:
    """The run's dataset as its prepared collection's manifest names it (the config needs one)."""
    import json
    from pathlib import Path

    m = Path(data_dir) / "manifest.json"
    name = json.loads(m.read_text()).get("fingerprint", {}).get("location") if m.exists() else None
    return [f"data.dataset={name}"] if name else []


def _runs(table, column: str, queries: list[str], *, ascending: bool) -> dict[str, list[str]]:
    t = table.to_pandas()
    t = t[t["query_id"].isin(set(queries)) & t[column].notna()]
    t = t.sort_values(["query_id", column], ascending=[True, ascending])
    return {q: list(g["doc_id"]) for q, g in t.groupby("query_id", sort=False)}


def _ndcg(per_query_metrics, qrels, run: dict, queries: list[str]) -> np.ndarray:
    values = per_query_metrics(qrels, run, queries)["ndcg@10"]
    return np.array([values[q] for q in queries])
