"""`zelo evaluate`: score the BM25, dense and hybrid rankings of a candidates set.

The three systems come from one ``candidates`` Parquet dataset: BM25 = rows with a
``bm25_rank`` ordered by it, dense likewise, hybrid = fused ``rank`` up to ``depth``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from zelo_ray.data import Collection
from zelo_ray.eval.metrics import METRICS, bootstrap_ci, judged_queries, per_query_metrics

__all__ = ["SYSTEMS", "evaluate_candidates", "evaluate_runs", "evaluate_with_config", "rankings_from_candidates"]

SYSTEMS = {"bm25": "bm25_rank", "dense": "dense_rank", "hybrid": "rank"}


def rankings_from_candidates(path: str | Path, queries: list[str], depth: int = 100) -> dict[str, dict[str, list[str]]]:
    """``{system: {query_id: [doc_id, ...]}}`` for the given queries only."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no candidates (run `zelo retrieve`)")
    ds = pads.dataset(str(path), format="parquet")
    missing = {"query_id", "doc_id", *SYSTEMS.values()} - set(ds.schema.names)
    if missing:
        raise ValueError(f"{path}: not a candidates set; missing columns {sorted(missing)}")
    t = ds.to_table(columns=["query_id", "doc_id", *SYSTEMS.values()],
                    filter=pc.field("query_id").isin(pa.array(queries, pa.string())))
    out: dict[str, dict[str, list[str]]] = {}
    for system, col in SYSTEMS.items():
        sub = t.filter(pc.is_valid(t[col]))
        if system == "hybrid":
            sub = sub.filter(pc.less_equal(sub[col], depth))
        sub = sub.sort_by([("query_id", "ascending"), (col, "ascending")])
        runs: dict[str, list[str]] = {}
        for q, d in zip(sub["query_id"].to_pylist(), sub["doc_id"].to_pylist()):
            runs.setdefault(q, []).append(d)
        out[system] = runs
    return out


def evaluate_runs(qrels, runs: dict[str, dict[str, list[str]]], queries: list[str], *, n_boot: int = 1000,
                  confidence: float = 0.95, seed: int = 0, versus: str | None = None,
                  per_query: bool = False) -> dict:
    """``{system: {metric: {mean, ci_low, ci_high}, n_queries}}`` with paired bootstrap CIs.

    With ``versus``, each other system also gets ``delta_vs_<versus>`` per metric: the mean
    per-query difference and its CI from the same resamples (excludes 0 → a real difference).
    With ``per_query``, ``report["per_query"]`` holds each system's nDCG@10 per query.
    """
    per_system = {s: per_query_metrics(qrels, run, queries) for s, run in runs.items()}
    report: dict = {s: {} for s in runs}
    names = list(runs)
    for metric in METRICS:
        values = np.array([[per_system[s][metric][q] for q in queries] for s in names]).reshape(len(names), len(queries))
        ci = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
        for k, system in enumerate(names):
            report[system][metric] = {
                "mean": round(float(values[k].mean()), 4) if queries else None,
                "ci_low": round(float(ci[k, 0]), 4), "ci_high": round(float(ci[k, 1]), 4)}
        if versus is not None and versus in runs:
            base = values[names.index(versus)]
            others = [s for s in names if s != versus]
            diffs = np.array([values[names.index(s)] - base for s in others]).reshape(len(others), len(queries))
            dci = bootstrap_ci(diffs, n_boot=n_boot, confidence=confidence, seed=seed)
            for k, system in enumerate(others):
                report[system].setdefault(f"delta_vs_{versus}", {})[metric] = {
                    "mean": round(float(diffs[k].mean()), 4) if queries else None,
                    "ci_low": round(float(dci[k, 0]), 4), "ci_high": round(float(dci[k, 1]), 4)}
    for system in names:
        report[system]["n_queries"] = len(queries)
    if per_query:
        report["per_query"] = {s: {q: round(float(per_system[s]["ndcg@10"][q]), 4) for q in queries} for s in names}
    return report


def evaluate_candidates(col: Collection, split: str, candidates: str | Path, *, depth: int = 100,
                        n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    qrels = col.qrels(split)
    judged = judged_queries(qrels)
    all_queries = set(col.queries()["query_id"].to_pylist())
    runs = rankings_from_candidates(candidates, judged, depth)
    retrieved = set().union(*(r.keys() for r in runs.values()))
    report = evaluate_runs(qrels, runs, judged, n_boot=n_boot, confidence=confidence, seed=seed)
    for system in runs:
        report[system]["judged_queries"] = len(judged)
    report["meta"] = {
        "dataset": col.name, "split": split, "candidates": str(candidates),
        "judged_queries": len(judged),
        "excluded_queries_without_judgments": len(all_queries - set(judged)),
        "judged_queries_without_candidates": len(set(judged) - retrieved),
        "hybrid_depth": depth, "bootstrap": n_boot, "confidence": confidence,
        "metrics_library": "pytrec_eval-terrier"}
    return report


def evaluate_with_config(col: Collection, split: str, candidates: str | Path, ecfg) -> dict:
    """:func:`evaluate_candidates` with the settings of an ``EvaluateConfig`` section."""
    return evaluate_candidates(col, split, candidates, depth=ecfg.depth, n_boot=ecfg.bootstrap,
                               confidence=ecfg.confidence, seed=ecfg.seed)
