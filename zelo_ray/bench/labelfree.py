"""How well do zELO-derived graded judgments rank systems the way human qrels do?

Per collection: the queries annotated by `zelo bench proof prepare` (its training queries),
their zELO scores → graded qrels (zelo_ray.eval.labelfree), and BM25 / dense / hybrid scored
under both label sources. With the simulated judge (driven by qrels) this measures the fidelity
of the label-free pipeline — sparse pairs, noisy votes, Elo, calibration, grading — not of an
LLM; it is labelled SIMULATION.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from zelo_ray.layout import layout


def run(datasets, *, workdir: str = "runs/bench-quality", bundle: str = "runs/proof/bundle", log=print) -> dict:
    from zelo_ray.bench.proof import _cfg
    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import rankings_from_candidates
    from zelo_ray.eval.labelfree import compare_label_sources, graded_qrels

    out = {"label": "SIMULATION", "datasets": {}}
    for ds in datasets:
        cfg = _cfg(ds, workdir, [])
        zpath = Path(workdir) / ds / "annotate-proof" / "zelo.parquet"
        if not zpath.exists():
            raise FileNotFoundError(f"{zpath}: run `zelo bench proof prepare` first")
        z = pq.read_table(zpath)
        queries = json.loads((Path(bundle) / ds / "split.json").read_text())["train"]
        col = open_collection(layout(cfg).data)
        runs = rankings_from_candidates(layout(cfg).candidates, queries, cfg.evaluate.depth)
        res = compare_label_sources(runs, col.qrels(cfg.data.split), graded_qrels(z), queries)
        out["datasets"][ds] = res
        log(f"[{ds}] {res['queries']} queries: " + ", ".join(
            f"{s} {v['human']:.3f}/{v['zelo']:.3f}" for s, v in res["systems"].items())
            + f"; τ(system order) {res['kendall_tau_system_order']}, r(per query) {res['pearson_per_query']}")
    return out
