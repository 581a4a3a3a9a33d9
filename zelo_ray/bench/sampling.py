"""Benchmark 2: does O(n) cycle sampling lose quality against judging all pairs? (zELO §3)

For every simulated query, the ensemble judges all n(n-1)/2 pairs once. Each sparse strategy
then keeps a subset of those same votes (so strategies differ only in which pairs they keep),
and its Elo is compared by Kendall τ with the all-pairs Elo and with the hidden truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from zelo_ray.bench.common import machine
from zelo_ray.core.stats import kendall_rows, mean_ci
from zelo_ray.core.elo import fit
from zelo_ray.core.ensemble import soft_outcomes
from zelo_ray.core.graph import all_pairs, random_pairs, sample_pairs
from zelo_ray.core.simulate import LABEL, JudgeModel, hidden_scores, simulate_ensemble


@dataclass
class SamplingRow:
    label: str
    strategy: str
    budget: int
    edges: int
    tau_vs_all_pairs: float
    tau_vs_all_pairs_ci: float
    tau_vs_truth: float
    tau_vs_truth_ci: float


def run(
    n_queries: int = 200,
    n_docs: int = 100,
    budgets: tuple[int, ...] = (100, 200, 400, 800, 4950),
    model: str = "thurstone",
    clamp: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    rng = np.random.default_rng(seed)
    hidden = hidden_scores(n_queries, n_docs, rng)
    full = all_pairs(n_docs)
    m_all = len(full)
    offset = np.arange(n_queries, dtype=np.int64)[:, None] * n_docs
    gi = (full[None, :, 0] + offset).ravel()
    gj = (full[None, :, 1] + offset).ravel()
    w_all = soft_outcomes(simulate_ensemble(np.stack([gi, gj], 1), hidden.ravel(), 3, rng,
                                            JudgeModel()), clamp=clamp).w.reshape(n_queries, m_all)
    group = np.repeat(np.arange(n_queries), n_docs)
    ref = fit(gi, gj, w_all.ravel(), n_queries * n_docs, group=group, model=model, stderr=False)
    ref_scores = ref.scores.reshape(n_queries, n_docs)
    rows = [SamplingRow(LABEL, "all", m_all, m_all, 1.0, 0.0,
                        *mean_ci(kendall_rows(ref_scores, hidden)))]
    jobs = [(s, b) for b in budgets for s in ("cycles", "random")]
    for strategy, budget in tqdm(jobs, desc="sampling", disable=not progress):
        k = max(2, 2 * round(budget / n_docs))  # cycles: N = k n / 2
        picks, ws = [], []
        for q in range(n_queries):
            if strategy == "cycles":
                pairs = sample_pairs("cycles", n_docs, k, rng)
            else:
                pairs = random_pairs(n_docs, min(budget, m_all), rng)
            a = np.minimum(pairs[:, 0], pairs[:, 1])
            b = np.maximum(pairs[:, 0], pairs[:, 1])
            idx = a * n_docs - a * (a + 1) // 2 + (b - a - 1)  # position in all_pairs order
            picks.append(np.stack([a, b], 1) + q * n_docs)
            ws.append(w_all[q, idx])
        p = np.concatenate(picks)
        res = fit(p[:, 0], p[:, 1], np.concatenate(ws), n_queries * n_docs, group=group,
                  model=model, stderr=False)
        sc = res.scores.reshape(n_queries, n_docs)
        rows.append(SamplingRow(LABEL, strategy, budget, len(picks[0]),
                                *mean_ci(kendall_rows(sc, ref_scores)),
                                *mean_ci(kendall_rows(sc, hidden))))
    return {"label": LABEL, "n_queries": n_queries, "n_docs": n_docs, "model": model,
            "clamp": clamp,
            "machine": machine(), "rows": [asdict(r) for r in rows]}


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "tau_vs_all_pairs", "τ(sparse Elo, all-pairs Elo)"),
                           (axes[1], "tau_vs_truth", "τ(sparse Elo, hidden truth)")):
        for strategy, marker in (("cycles", "o"), ("random", "s")):
            rows = [r for r in result["rows"] if r["strategy"] == strategy]
            ax.errorbar([r["budget"] for r in rows], [r[key] for r in rows],
                        yerr=[r[key + "_ci"] for r in rows], marker=marker, label=strategy,
                        capsize=3)
        if key == "tau_vs_truth":
            ref = [r for r in result["rows"] if r["strategy"] == "all"][0]
            ax.axhline(ref[key], color="grey", ls="--", label="all pairs")
        ax.set_xscale("log")
        ax.set_xlabel("pairs judged per query (N)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{LABEL}: n={result['n_docs']}, {result['n_queries']} queries, "
                 f"{result['model']} Elo, 3 simulated judges, "
                 f"{'clamped' if result['clamp'] else 'soft'} votes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
