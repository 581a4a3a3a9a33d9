"""`zelo bench adaptive`: judge calls against label quality, adaptive pair selection vs cycles (#33).

Per collection, the BM25 top-``n`` candidates of its judged queries get a hidden relevance from
their qrels grade (:func:`zelo_ray.core.simulate.latent_from_grades`, unjudged = grade 0), and a
simulated 3-judge ensemble judges **every** pair once. Each strategy then keeps the votes of the
pairs it would have asked, so strategies differ only in which pairs they pay for; the reference is
the Elo of all pairs (the "dense" Elo). Per budget (comparisons per document, k; k·n/2 pairs per
query) and strategy, over queries: Kendall τ with the dense Elo over the whole list and over the
dense Elo's top 20, and nDCG@10 of the Elo ranking against the qrels — with 95 % CIs, and the
paired difference of adaptive at half the calls of k = 8 cycles against k = 8 cycles.

Everything here is SIMULATION: real judges are noisier in other ways (position bias, refusals).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from zelo_ray.bench.common import machine
from zelo_ray.core.simulate import LABEL

__all__ = ["compare_runs", "markdown", "plot", "run"]

DATASETS = ("cranfield", "cisi", "med", "cacm", "vaswani", "nfcorpus")


def run(datasets=DATASETS, *, workdir: str = "runs/bench-adaptive", n_docs: int = 100, max_queries: int = 500,
        cycle_budgets=(2, 4, 6, 8), adaptive_budgets=(2, 3, 4, 5, 6, 8), rounds: int = 8, top: int = 20,
        seed: int = 0, log=print) -> dict:
    out = {"label": LABEL, "machine": machine(), "n_docs": n_docs, "rounds": rounds, "top": top,
           "judges": 3, "collections": {}}
    for ds in datasets:
        t0 = time.perf_counter()
        sim = simulated_collection(ds, Path(workdir) / ds, n_docs=n_docs, max_queries=max_queries, seed=seed)
        res = compare(sim, cycle_budgets=cycle_budgets, adaptive_budgets=adaptive_budgets, rounds=rounds,
                      top=top, seed=seed)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out["collections"][ds] = res
        half = res["half_vs_full"]
        log(f"{ds}: {res['queries']} queries · adaptive k=4 − cycles k=8: top-20 τ "
            f"{half['tau_top']['delta']:+.3f} ±{half['tau_top']['ci']:.3f}, nDCG@10 "
            f"{half['ndcg10']['delta']:+.3f} ±{half['ndcg10']['ci']:.3f} → "
            f"{'matches' if half['matches'] else 'worse'} ({res['seconds']:.0f} s)")
    out["matched_collections"] = sum(r["half_vs_full"]["matches"] for r in out["collections"].values())
    return out


# -- the simulated collection ---------------------------------------------------------------------
class SimCollection:
    """Candidates, grades and every pair's ensemble outcome for a collection's judged queries."""

    def __init__(self, name: str, qids: list[str], docs: np.ndarray, grades: np.ndarray, outcome: np.ndarray,
                 qrels: dict):
        self.name, self.qids, self.docs, self.grades, self.qrels = name, qids, docs, grades, qrels
        self.outcome = outcome
        """(Q, n, n) P(row beats column) from the ensemble's clamped votes (NaN on the diagonal)."""

    @property
    def n(self) -> int:
        return self.docs.shape[1]


def simulated_collection(ds: str, work: Path, *, n_docs: int, max_queries: int, seed: int) -> SimCollection:
    from zelo_ray.core.ensemble import soft_outcomes
    from zelo_ray.core.graph import all_pairs
    from zelo_ray.core.simulate import JudgeModel, latent_from_grades, simulate_ensemble

    qids, docs, qrels = _bm25_candidates(ds, work, n_docs=n_docs, max_queries=max_queries, seed=seed)
    grades = np.array([[qrels[q].get(d, 0) for d in row] for q, row in zip(qids, docs)], np.float64)
    grades = np.maximum(grades, 0)
    rng = np.random.default_rng(seed)
    latent = latent_from_grades(grades, max(grades.max(), 1.0), rng.standard_normal(grades.shape))
    pairs = all_pairs(n_docs)
    outcome = np.full((len(qids), n_docs, n_docs), np.nan)
    for q in range(len(qids)):
        votes = simulate_ensemble(pairs, latent[q], 3, rng, JudgeModel())
        w = soft_outcomes(votes, clamp=True, min_votes=1).w
        outcome[q, pairs[:, 0], pairs[:, 1]] = w
        outcome[q, pairs[:, 1], pairs[:, 0]] = 1 - w
    return SimCollection(ds, qids, docs, grades, outcome, qrels)


def _bm25_candidates(ds: str, work: Path, *, n_docs: int, max_queries: int, seed: int):
    """Judged queries with at least ``n_docs`` BM25 hits and a relevant document among them."""
    from zelo_ray.data import prepare
    from zelo_ray.layout import layout_at
    from zelo_ray.retrieval.bm25 import BM25Searcher, build_bm25

    col = prepare(ds, layout_at(work).data)
    build_bm25(col.corpus_path, work / "bm25")
    qrels: dict[str, dict[str, int]] = {}
    for split in col.splits:
        for q, d in col.qrels(split).items():
            qrels.setdefault(q, {}).update(d)
    q = col.queries()
    text = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))
    judged = sorted(x for x, d in qrels.items() if x in text and any(r > 0 for r in d.values()))
    ids = np.asarray(col.doc_ids().to_pylist(), dtype=object)
    hits = BM25Searcher(work / "bm25").search([text[x] for x in judged], n_docs)
    keep = [(x, ids[rows]) for x, (rows, _) in zip(judged, hits)
            if len(rows) == n_docs and any(qrels[x].get(d, 0) > 0 for d in ids[rows])]
    rng = np.random.default_rng(seed)
    if len(keep) > max_queries:
        keep = [keep[i] for i in sorted(rng.choice(len(keep), max_queries, replace=False))]
    return [x for x, _ in keep], np.stack([d for _, d in keep]), qrels


# -- the strategies ------------------------------------------------------------------------------
def _fit(sim: SimCollection, local: list[np.ndarray], *, stderr: bool):
    from zelo_ray.core.elo import fit

    n = sim.n
    ia = np.concatenate([p[:, 0] + q * n for q, p in enumerate(local)])
    ib = np.concatenate([p[:, 1] + q * n for q, p in enumerate(local)])
    qi = np.concatenate([np.full(len(p), q) for q, p in enumerate(local)])
    w = sim.outcome[qi, ia - qi * n, ib - qi * n]
    res = fit(ia, ib, w, len(local) * n, group=np.repeat(np.arange(len(local)), n), stderr=stderr)
    return res.scores.reshape(len(local), n), res.stderr.reshape(len(local), n)


def cycles(sim: SimCollection, k: int, seed: int) -> tuple[np.ndarray, int]:
    """The paper's graph: Elo scores (Q, n) and the pairs judged."""
    from zelo_ray.core.graph import sample_pairs

    local = [sample_pairs("cycles", sim.n, k, np.random.default_rng([seed, q, k])) for q in range(len(sim.qids))]
    return _fit(sim, local, stderr=False)[0], sum(len(p) for p in local)


def adaptive(sim: SimCollection, k: float, seed: int, *, rounds: int, top: int) -> tuple[np.ndarray, int]:
    """Rounds of :func:`zelo_ray.core.adaptive.next_pairs` after one random cycle."""
    from zelo_ray.core.adaptive import next_pairs, round_budgets
    from zelo_ray.core.graph import sample_pairs

    budgets = round_budgets(sim.n, k, rounds)
    rngs = [np.random.default_rng([seed, q, 1000 + int(k * 10)]) for q in range(len(sim.qids))]
    local = [sample_pairs("cycles", sim.n, 2, r) for r in rngs]
    for m in budgets[1:]:
        scores, se = _fit(sim, local, stderr=True)
        local = [np.concatenate([p, next_pairs(scores[q], se[q], p, m, top=top, rng=rngs[q])])
                 for q, p in enumerate(local)]
    return _fit(sim, local, stderr=False)[0], sum(len(p) for p in local)


# -- measuring ------------------------------------------------------------------------------------
def _metrics(sim: SimCollection, scores: np.ndarray, dense: np.ndarray, top: int) -> dict[str, np.ndarray]:
    from scipy.stats import kendalltau

    from zelo_ray.eval.metrics import per_query_metrics

    tau = np.array([kendalltau(a, b).statistic for a, b in zip(scores, dense)])
    head = np.argsort(-dense, axis=1)[:, :top]
    tau_top = np.array([kendalltau(s[h], d[h]).statistic for s, d, h in zip(scores, dense, head)])
    run = {q: list(sim.docs[i][np.argsort(-scores[i], kind="stable")]) for i, q in enumerate(sim.qids)}
    nd = per_query_metrics(sim.qrels, run, sim.qids)["ndcg@10"]
    return {"tau": np.nan_to_num(tau), "tau_top": np.nan_to_num(tau_top),
            "ndcg10": np.array([nd[q] for q in sim.qids])}


def _summary(values: dict[str, np.ndarray], pairs: int, n_queries: int) -> dict:
    from zelo_ray.core.stats import mean_ci

    out = {"pairs_per_query": round(pairs / n_queries, 1)}
    for name, v in values.items():
        m, ci = mean_ci(v)
        out[name], out[f"{name}_ci"] = round(m, 4), round(ci, 4)
    return out


def compare(sim: SimCollection, *, cycle_budgets, adaptive_budgets, rounds: int, top: int, seed: int) -> dict:
    from zelo_ray.core.graph import all_pairs
    from zelo_ray.core.stats import mean_ci

    dense = _fit(sim, [all_pairs(sim.n)] * len(sim.qids), stderr=False)[0]
    Q = len(sim.qids)
    per = {}
    for k in cycle_budgets:
        scores, pairs = cycles(sim, k, seed)
        per[("cycles", k)] = (_metrics(sim, scores, dense, top), pairs)
    for k in adaptive_budgets:
        scores, pairs = adaptive(sim, k, seed, rounds=rounds, top=top)
        per[("adaptive", k)] = (_metrics(sim, scores, dense, top), pairs)
    curve = {f"{s}:{k}": _summary(m, p, Q) for (s, k), (m, p) in per.items()}
    dense_nd = _metrics(sim, dense, dense, top)["ndcg10"]
    out = {"queries": Q, "curve": curve, "dense_ndcg10": round(float(dense_nd.mean()), 4)}
    full, half = per.get(("cycles", 8)), per.get(("adaptive", 4))
    if full and half:
        diff = {}
        for name in ("tau_top", "ndcg10", "tau"):
            m, ci = mean_ci(half[0][name] - full[0][name])
            diff[name] = {"delta": round(m, 4), "ci": round(ci, 4), "not_worse": bool(m + ci >= 0)}
        diff["calls_ratio"] = round(half[1] / full[1], 3)
        diff["matches"] = diff["tau_top"]["not_worse"] and diff["ndcg10"]["not_worse"]
        out["half_vs_full"] = diff
    return out


def compare_runs(candidate: str, baseline: str, systems=("reranker", "reranker_model_only", "dense_tuned")) -> dict:
    """The end-to-end check: two finished runs on the same test queries (e.g. adaptive labels at
    half the calls vs cycles at full calls), each system's nDCG@10 and the paired bootstrap CI of
    ``candidate − baseline`` from their ``metrics.json`` per-query values."""
    import json

    from zelo_ray.eval.metrics import bootstrap_ci
    from zelo_ray.layout import layout_at

    a, b = (json.loads(layout_at(r).metrics.read_text()) for r in (candidate, baseline))
    out = {"candidate": candidate, "baseline": baseline, "test_queries": a["meta"]["test_queries"], "systems": {}}
    for name in systems:
        qa, qb = a["per_query"]["ndcg@10"].get(name), b["per_query"]["ndcg@10"].get(name)
        if not qa or not qb:
            continue
        qs = sorted(set(qa) & set(qb))
        x, y = np.array([qa[q] for q in qs]), np.array([qb[q] for q in qs])
        lo, hi = bootstrap_ci(x - y)[0]
        out["systems"][name] = {"candidate": round(float(x.mean()), 4), "baseline": round(float(y.mean()), 4),
                                "delta": round(float((x - y).mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
                                "not_worse": bool(hi >= 0)}
    return out


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(result["collections"])
    fig, axes = plt.subplots(2, len(cols), figsize=(3.2 * len(cols), 6), squeeze=False)
    for c, ds in enumerate(cols):
        curve = result["collections"][ds]["curve"]
        for r, metric in enumerate(("tau_top", "ndcg10")):
            ax = axes[r][c]
            for strategy, style in (("cycles", "o-"), ("adaptive", "s-")):
                pts = sorted((v["pairs_per_query"] * 2 / result["n_docs"], v[metric], v[f"{metric}_ci"])
                             for key, v in curve.items() if key.startswith(strategy + ":"))
                x, y, e = (np.array(a) for a in zip(*pts))
                ax.plot(x, y, style, label=strategy, ms=4)
                ax.fill_between(x, y - e, y + e, alpha=0.2)
            if metric == "ndcg10":
                ax.axhline(result["collections"][ds]["dense_ndcg10"], color="grey", ls=":", lw=1,
                           label="all pairs")
            ax.set_title(ds if r == 0 else "", fontsize=10)
            ax.set_xlabel("comparisons per document (k)" if r == 1 else "")
            if c == 0:
                ax.set_ylabel("Kendall τ, top 20 vs all pairs" if r == 0 else "nDCG@10 of the Elo ranking")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{LABEL}: adaptive pair selection vs the paper's cycles ({result['judges']} simulated judges, "
                 f"top-{result['n_docs']} BM25 candidates)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    lines = ["| collection | queries | top-20 τ: adaptive k=4 − cycles k=8 | nDCG@10: adaptive k=4 − cycles k=8 "
             "| τ (whole list) | matches |", "|---|---|---|---|---|---|"]
    for ds, r in result["collections"].items():
        h = r["half_vs_full"]
        cell = lambda d: f"{d['delta']:+.3f} ± {d['ci']:.3f}"  # noqa: E731
        lines.append(f"| {ds} | {r['queries']} | {cell(h['tau_top'])} | {cell(h['ndcg10'])} | {cell(h['tau'])} "
                     f"| {'yes' if h['matches'] else 'no'} |")
    return "\n".join(lines)
