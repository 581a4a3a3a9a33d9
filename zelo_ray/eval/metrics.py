"""Per-query IR metrics (pytrec_eval, the trec_eval implementation) and paired bootstrap CIs.

Pure functions over dicts and arrays: no Ray, no I/O.

Example::

    >>> from zelo_ray.eval.metrics import per_query_metrics
    >>> qrels = {"q1": {"d1": 1, "d2": 0}}
    >>> m = per_query_metrics(qrels, {"q1": ["d2", "d1"]})
    >>> m["mrr@10"]["q1"]
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["METRICS", "bootstrap_ci", "judged_queries", "per_query_metrics"]

METRICS = ("ndcg@10", "recall@100", "mrr@10")


def judged_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Queries with at least one relevant (gain > 0) document; the rest have undefined nDCG."""
    return sorted(q for q, docs in qrels.items() if any(r > 0 for r in docs.values()))


def per_query_metrics(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[str]],
                      queries: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: value}}`` for ranked lists ``run[qid]`` (best first).

    Every judged query gets a value; one missing from ``run`` scores 0 (trec_eval ``-c``).
    MRR@10 is the reciprocal rank of the first relevant document within the top 10.
    """
    import pytrec_eval

    queries = list(queries) if queries is not None else judged_queries(qrels)
    sub_qrels = {q: {d: int(r) for d, r in qrels[q].items()} for q in queries}
    full, top10 = {}, {}
    for q in queries:
        docs = list(run.get(q, ()))
        if len(set(docs)) != len(docs):
            raise ValueError(f"run for query {q!r} repeats a document")
        # scores that reproduce our order exactly (pytrec_eval sorts by score)
        full[q] = {d: float(len(docs) - i) for i, d in enumerate(docs)}
        top10[q] = {d: s for d, s in list(full[q].items())[:10]}
    ev = pytrec_eval.RelevanceEvaluator(sub_qrels, {"ndcg_cut.10", "recall.100"})
    ev_rr = pytrec_eval.RelevanceEvaluator(sub_qrels, {"recip_rank"})
    res = ev.evaluate({q: r for q, r in full.items() if r})
    res_rr = ev_rr.evaluate({q: r for q, r in top10.items() if r})
    out = {m: {} for m in METRICS}
    for q in queries:
        out["ndcg@10"][q] = res.get(q, {}).get("ndcg_cut_10", 0.0)
        out["recall@100"][q] = res.get(q, {}).get("recall_100", 0.0)
        out["mrr@10"][q] = res_rr.get(q, {}).get("recip_rank", 0.0)
    return out


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> np.ndarray:
    """Percentile bootstrap over queries. ``values``: (n_systems, n_queries); the same
    resampled query sets are used for every system (paired), so the intervals of two systems
    and of their difference come from one set of draws. Returns (n_systems, 2) bounds."""
    values = np.atleast_2d(np.asarray(values, float))
    n = values.shape[1]
    if n == 0:
        return np.full((values.shape[0], 2), np.nan)
    if n_boot <= 0:
        return np.repeat(values.mean(axis=1, keepdims=True), 2, axis=1)
    rng = np.random.default_rng(seed)
    means = np.empty((values.shape[0], n_boot))
    for s in range(0, n_boot, 256):  # bounded memory for large query sets
        idx = rng.integers(0, n, size=(min(256, n_boot - s), n))
        means[:, s:s + len(idx)] = values[:, idx].mean(axis=2)
    alpha = (1 - confidence) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=1).T
