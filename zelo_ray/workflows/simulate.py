"""The simulated end-to-end run of the zELO core (`zelo simulate`, the README's first command).

hidden relevance → pair graph per query → simulated 3-judge ensemble → Elo fit → report.
Every output is labelled SIMULATION. Later stages replace the simulation step by step with
real retrieval and real judges; the Elo and report parts stay.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.core.stats import kendall_rows, mean_ci
from zelo_ray.config import ZeloConfig
from zelo_ray.core.elo import fit
from zelo_ray.core.ensemble import soft_outcomes
from zelo_ray.core.simulate import LABEL, JudgeModel, simulate_queries


def run_simulation(cfg: ZeloConfig, *, log=print) -> dict:
    """Run the demo described by ``cfg``; write outputs under ``cfg.simulate.output_dir``."""
    out = Path(cfg.simulate.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    batch = _judged_pairs(cfg, timings, log)
    res, keep = _fit_elo(cfg, batch, timings, log)
    tau = _agreement(cfg, res, batch, log)
    _write_scores(cfg, res, batch, out)
    report = _report(cfg, res, batch, keep, tau, timings, out)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"[{LABEL}] wrote {out / 'zelo.parquet'}, {out / 'report.json'}, "
        f"{out / 'scores_hist.png'}")
    return report


def _judged_pairs(cfg: ZeloConfig, timings: dict, log):
    sim, g, jc = cfg.simulate, cfg.graph, cfg.simulate.ensemble
    if g.strategy == "adaptive":
        from zelo_ray.config.loading import ConfigError

        raise ConfigError("graph.strategy=adaptive: `zelo simulate` draws each query's graph at once; adaptive "
                         "rounds on simulated judges are measured by `zelo bench adaptive` (or run `zelo demo` "
                         "with it)")
    t0 = time.perf_counter()
    judge = JudgeModel(jc.noise_sd, jc.uniform_mix, jc.position_bias)
    batch = simulate_queries(
        sim.n_queries, sim.n_docs, np.random.default_rng(sim.seed), strategy=g.strategy, k=g.k,
        n_judges=jc.n_judges, judge=judge, low=sim.score_low, high=sim.score_high,
    )
    timings["pairs_and_judgments_s"] = time.perf_counter() - t0
    log(f"[{LABEL}] {sim.n_queries} queries x {sim.n_docs} docs: {len(batch.i)} pairs, "
        f"{batch.votes.size} simulated judge calls ({timings['pairs_and_judgments_s']:.2f}s)")
    return batch


def _fit_elo(cfg: ZeloConfig, batch, timings: dict, log):
    jc, ec = cfg.simulate.ensemble, cfg.elo
    outcome = soft_outcomes(batch.votes, clamp=jc.clamp, min_votes=jc.min_votes)
    keep = outcome.valid
    t0 = time.perf_counter()
    res = fit(batch.i[keep], batch.j[keep], outcome.w[keep], len(batch.group), group=batch.group,
              model=ec.model, prior=ec.prior, tol=ec.tol, max_iter=ec.max_iter, stderr=ec.stderr)
    timings["elo_fit_s"] = time.perf_counter() - t0
    log(f"[{LABEL}] {ec.model} Elo: {int(res.converged.sum())}/{len(res.converged)} queries "
        f"converged, {res.iterations.mean():.1f} Newton iterations on average "
        f"({timings['elo_fit_s']:.2f}s)")
    return res, keep


def _agreement(cfg: ZeloConfig, res, batch, log) -> np.ndarray:
    """Kendall τ per query between the fitted scores and the hidden relevance."""
    tau = kendall_rows(res.scores.reshape(cfg.simulate.n_queries, cfg.simulate.n_docs), batch.hidden)
    tau_mean, tau_ci = mean_ci(tau)
    log(f"[{LABEL}] Kendall tau(Elo, hidden relevance) = {tau_mean:.3f} ± {tau_ci:.3f} "
        f"(median {np.median(tau):.3f}, worst query {tau.min():.3f})")
    return tau


def _write_scores(cfg: ZeloConfig, res, batch, out: Path) -> None:
    nq, n = cfg.simulate.n_queries, cfg.simulate.n_docs
    table = pa.table({
        "query_id": pa.array(np.repeat(np.arange(nq), n).astype(str)),
        "doc_id": pa.array(np.tile(np.arange(n), nq).astype(str)),
        "elo": res.scores,
        "stderr": res.stderr,
        "hidden_relevance": batch.hidden.ravel(),
        "label": pa.array([LABEL] * len(res.scores)),
    })
    pq.write_table(table, out / "zelo.parquet")
    _histogram(res.scores, batch.hidden.ravel(), out / "scores_hist.png", cfg.elo.model)


def _report(cfg: ZeloConfig, res, batch, keep, tau, timings: dict, out: Path) -> dict:
    tau_mean, tau_ci = mean_ci(tau)
    return {
        "label": LABEL,
        "config": cfg.model_dump(),
        "pairs": int(len(batch.i)),
        "pairs_used": int(keep.sum()),
        "judge_calls": int(batch.votes.size),
        "converged": int(res.converged.sum()),
        "not_converged_queries": res.group_ids[~res.converged].tolist(),
        "mean_newton_iterations": float(res.iterations.mean()),
        "kendall_tau_vs_truth": {"mean": tau_mean, "ci95": tau_ci,
                                 "median": float(np.median(tau)), "min": float(tau.min())},
        "timings": timings,
        "outputs": {"zelo": str(out / "zelo.parquet"), "histogram": str(out / "scores_hist.png")},
    }


def _histogram(scores: np.ndarray, hidden: np.ndarray, path: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].hist(scores, bins=60, color="tab:blue")
    axes[0].set_xlabel(f"{model} Elo score")
    axes[0].set_ylabel("documents")
    axes[0].set_title("Elo scores (sum zero per query)")
    sel = np.random.default_rng(0).choice(len(scores), size=min(5000, len(scores)), replace=False)
    axes[1].scatter(hidden[sel], scores[sel], s=3, alpha=0.4)
    axes[1].set_xlabel("hidden relevance")
    axes[1].set_ylabel("Elo score")
    axes[1].set_title("Elo vs hidden relevance")
    fig.suptitle(f"{LABEL}: simulated judges")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
