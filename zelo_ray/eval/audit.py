"""What `zelo audit` computes once the pool is judged: the pool itself, each system's zELO-graded
scores with paired bootstrap CIs, the paired differences between systems, and the failing queries.

Pure functions over dicts and arrays (no Ray, no I/O).

    >>> runs = {"a": {"q": ["d1", "d2"]}, "b": {"q": ["d3", "d1"]}}
    >>> pool_runs(runs, ["q"], depth=2)["q"]      # fused: d1 is high in both lists
    ['d1', 'd3', 'd2']
    >>> find_failures({"q": ("d3", 2.0)}, runs, fail_rank=1)
    [{'system': 'a', 'query_id': 'q', 'best_doc': 'd3', 'best_score': 2.0, 'best_rank': None}]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from zelo_ray.eval.metrics import bootstrap_ci, per_query_metrics

__all__ = ["find_failures", "pool_runs", "recall_at", "score_systems"]


def pool_runs(runs: Mapping[str, Mapping[str, Sequence[str]]], queries: Sequence[str], *, depth: int,
              c: float = 60.0) -> dict[str, list[str]]:
    """Each query's pool: the union of every system's top ``depth``, ordered by reciprocal-rank
    fusion (``1 / (c + rank)`` summed over systems; ties by document id)."""
    out = {}
    for q in queries:
        fused: dict[str, float] = {}
        for run in runs.values():
            for r, d in enumerate(list(run.get(q, ()))[:depth], 1):
                fused[d] = fused.get(d, 0.0) + 1.0 / (c + r)
        out[q] = sorted(fused, key=lambda d: (-fused[d], d))
    return out


def recall_at(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[str]], queries: Sequence[str],
              k: int) -> dict[str, float]:
    """Share of each query's relevant (grade > 0) documents in the run's top ``k``."""
    out = {}
    for q in queries:
        rel = {d for d, g in qrels.get(q, {}).items() if g > 0}
        top = set(list(run.get(q, ()))[:k])
        out[q] = len(rel & top) / len(rel) if rel else 0.0
    return out


def _ci(values: np.ndarray, ci: np.ndarray) -> dict:
    return {"mean": round(float(values.mean()), 4) if values.size else None,
            "ci_low": round(float(ci[0]), 4), "ci_high": round(float(ci[1]), 4)}


def score_systems(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Mapping[str, Sequence[str]]],
                  queries: Sequence[str], *, k: int, n_boot: int = 1000, confidence: float = 0.95,
                  seed: int = 0) -> dict:
    """Per system nDCG@10, Recall@k and MRR@10 (mean and CI), and for every pair of systems the
    mean per-query difference with its paired CI (the same resampled queries for all)."""
    queries = list(queries)
    names = list(runs)
    metric_k = f"recall@{k}"
    per: dict[str, dict[str, dict[str, float]]] = {}
    for s in names:
        m = per_query_metrics(qrels, runs[s], queries)
        per[s] = {"ndcg@10": m["ndcg@10"], metric_k: recall_at(qrels, runs[s], queries, k), "mrr@10": m["mrr@10"]}
    systems: dict = {s: {} for s in names}
    diffs: dict = {}
    for metric in ("ndcg@10", metric_k, "mrr@10"):
        values = np.array([[per[s][metric][q] for q in queries] for s in names], float).reshape(len(names), len(queries))
        ci = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
        for i, s in enumerate(names):
            systems[s][metric] = _ci(values[i], ci[i])
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        if pairs:
            d = np.array([values[names.index(a)] - values[names.index(b)] for a, b in pairs]).reshape(len(pairs), len(queries))
            dci = bootstrap_ci(d, n_boot=n_boot, confidence=confidence, seed=seed)
            for j, (a, b) in enumerate(pairs):
                diffs.setdefault(f"{a} - {b}", {})[metric] = _ci(d[j], dci[j])
    return {"queries": len(queries), "systems": systems, "paired": diffs,
            "per_query": {s: {q: round(per[s]["ndcg@10"][q], 4) for q in queries} for s in names}}


def find_failures(best: Mapping[str, tuple[str, float]], runs: Mapping[str, Mapping[str, Sequence[str]]], *,
                  fail_rank: int) -> list[dict]:
    """Queries where a system does not rank the zELO-best document of the pool (``best[q] =
    (doc_id, score)``) in its top ``fail_rank``; ``best_rank`` is its rank there (None: absent)."""
    out = []
    for s, run in runs.items():
        for q, (doc, score) in best.items():
            ranked = list(run.get(q, ()))
            rank = ranked.index(doc) + 1 if doc in ranked else None
            if rank is None or rank > fail_rank:
                out.append({"system": s, "query_id": q, "best_doc": doc, "best_score": score, "best_rank": rank})
    return out
