"""Label-free benchmarking (zELO's "automated benchmarking"): turn zELO scores into graded
judgments for a corpus and queries that have no qrels, and score any ranker against them.

Grades come from the calibrated scores pooled over all queries (cross-query calibration is
what makes one threshold mean the same thing for every query): the top ``shares[0]`` of judged
candidates get the highest grade, the next ``shares[1]`` the next, and so on; the rest get 0.
Pure functions: tables and dicts in, dicts out.

    >>> import pyarrow as pa
    >>> from zelo_ray.eval.labelfree import graded_qrels
    >>> z = pa.table({"query_id": ["q"] * 4, "doc_id": list("abcd"), "calibrated": [3.0, 1.0, 0.0, -2.0]})
    >>> graded_qrels(z, shares=(0.25, 0.25))["q"]
    {'a': 2, 'b': 1, 'c': 0, 'd': 0}
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy.stats import kendalltau, pearsonr

from zelo_ray.eval.metrics import per_query_metrics

__all__ = ["compare_label_sources", "graded_qrels"]


def graded_qrels(zelo: pa.Table, *, shares: tuple[float, ...] = (0.05, 0.10, 0.15),
                 score: str = "calibrated") -> dict[str, dict[str, int]]:
    col = score if score in zelo.column_names else "elo"
    s = zelo[col].to_numpy(zero_copy_only=False).astype(float)
    ok = np.isfinite(s)
    if sum(shares) >= 1 or any(x <= 0 for x in shares):
        raise ValueError(f"shares {shares} must be positive and sum to less than 1")
    cuts = np.quantile(s[ok], 1 - np.cumsum(shares)) if ok.any() else np.array([])
    grade = np.zeros(len(s), int)
    for g, c in enumerate(cuts):  # highest grade = len(shares) for the top share
        grade[(grade == 0) & ok & (s >= c)] = len(shares) - g
    out: dict[str, dict[str, int]] = {}
    for q, d, g in zip(zelo["query_id"].to_pylist(), zelo["doc_id"].to_pylist(), grade.tolist()):
        out.setdefault(q, {})[d] = g
    return out


def compare_label_sources(runs: dict[str, dict[str, list[str]]], human: dict, zelo_qrels: dict,
                          queries: list[str], metric: str = "ndcg@10") -> dict:
    """Score every system under both label sources; how well do they agree?

    Reports each system's mean metric under human and zELO labels, Kendall τ between the two
    orderings of the systems, and the Pearson correlation of per-(system, query) values."""
    qs = [q for q in queries if q in zelo_qrels and any(v > 0 for v in zelo_qrels[q].values())
          and any(v > 0 for v in human.get(q, {}).values())]
    per_h = {s: per_query_metrics(human, r, qs)[metric] for s, r in runs.items()}
    per_z = {s: per_query_metrics(zelo_qrels, r, qs)[metric] for s, r in runs.items()}
    mh = {s: float(np.mean([per_h[s][q] for q in qs])) if qs else float("nan") for s in runs}
    mz = {s: float(np.mean([per_z[s][q] for q in qs])) if qs else float("nan") for s in runs}
    names = list(runs)
    tau = float(kendalltau([mh[s] for s in names], [mz[s] for s in names]).statistic) if len(names) > 1 else float("nan")
    xh = [per_h[s][q] for s in names for q in qs]
    xz = [per_z[s][q] for s in names for q in qs]
    r = float(pearsonr(xh, xz).statistic) if len(xh) > 2 and np.std(xh) > 0 and np.std(xz) > 0 else float("nan")
    return {"queries": len(qs), "metric": metric,
            "systems": {s: {"human": round(mh[s], 4), "zelo": round(mz[s], 4)} for s in names},
            "kendall_tau_system_order": round(tau, 4), "pearson_per_query": round(r, 4)}
