"""The annotate stage's report: totals over every bucket, judge diagnostics on the first bucket's
queries (all of them when the run is one bucket), and spend over the whole vote store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from zelo_ray.annotate import diagnostics
from zelo_ray.annotate.buckets import Plan
from zelo_ray.annotate.qrels import qrels_grades
from zelo_ray.annotate.scores import WithinFit, outcome_matrix
from zelo_ray.config import ZeloConfig
from zelo_ray.core.simulate import LABEL
from zelo_ray.judges.prompt import PROMPT_VERSION
from zelo_ray.judges.store import VoteStore

__all__ = ["first_bucket_diagnostics", "report_step"]


def first_bucket_diagnostics(cfg: ZeloConfig, run, graph, fitted: dict) -> dict:
    """Agreement, position bias, grades and the held-out link comparison, on the first bucket's
    queries (all of them when the run is one bucket)."""
    acfg = cfg.annotate
    names = [j.name for j in acfg.judges]
    fit: WithinFit = fitted["fit"]
    ts, pairs = fitted["ts"], graph.pairs
    keep = fit.valid_within
    return {
        "queries": graph.n_queries,
        "agreement": diagnostics.agreement(outcome_matrix(ts, pairs["pair_id"], names, "within"), names),
        "position_bias": diagnostics.position_bias(ts, names),
        "decisive_by_grade": diagnostics.decisive_by_grade(fitted["votes"], pairs, qrels_grades(run.qrels))
        if run.qrels is not None else None,
        "heldout_likelihood": diagnostics.heldout_models(
            fit.edge_i[keep], fit.edge_j[keep], fit.w_within[keep], pairs["pair_id"].to_numpy()[keep],
            fit.group, graph.nodes.num_rows, fraction=acfg.heldout, prior=cfg.elo.prior)
        if acfg.heldout and keep.any() else None,
    }


def report_step(cfg: ZeloConfig, run, plan: Plan, store: VoteStore, totals,
                first_table: pa.Table | None, out: Path, timings: dict, *, fingerprint: str) -> dict:
    """Totals, diagnostics and spend → ``report.json``."""
    acfg = cfg.annotate
    names = [j.name for j in acfg.judges]
    diag = totals.first or {"agreement": None, "position_bias": {n: None for n in names},
                            "decisive_by_grade": None, "heldout_likelihood": None, "queries": 0}
    spend = diagnostics.spend_of_store(store, names)
    effect = diagnostics.calibration_effect(first_table, run.qrels, acfg.seed) if first_table is not None else {}
    report = {
        "label": LABEL if run.simulated else None,
        "prompt_version": PROMPT_VERSION,
        "queries": len(plan.qids), "pairs": (totals.within or {}).get("pairs", 0),
        "cross_pairs": plan.cross.num_rows,
        "judge_calls": totals.calls, "asked_this_run": totals.asked, "reused": totals.reused,
        "votes_per_s": round(totals.asked / max(timings.get("judge_s", 0.0), 1e-9), 1),
        "missing_votes": totals.missing,
        "failed": totals.failures,
        # damaged vote parts moved aside (by this run or an earlier one): their votes were asked again
        "quarantined_parts": store.quarantined(),
        "buckets": plan.n_buckets,
        "elo": totals.within or {}, "calibration": {**totals.calibration, **effect},
        "judges": {n: {"spend": spend[n], **totals.failures_by_judge.get(n, {}),
                       "position_bias": (diag["position_bias"] or {}).get(n)} for n in names},
        "total_cost": round(sum(s["cost"] for s in spend.values()), 6),
        "agreement": diag["agreement"], "heldout_likelihood": diag["heldout_likelihood"],
        "decisive_by_grade": diag["decisive_by_grade"],
        "diagnostics_queries": diag["queries"],
        "timings": timings,
        "fingerprint": fingerprint,
        "files": {"pairs": str(out / "pairs.parquet"), "cross_pairs": str(out / "cross_pairs.parquet"),
                  "votes": str(store.path), "zelo": str(out / "zelo.parquet"),
                  "pair_outcomes": str(out / "pair_outcomes.parquet")},
    }
    (out / "report.json.tmp").write_text(json.dumps(report, indent=2, default=str))
    os.replace(out / "report.json.tmp", out / "report.json")
    return report
