"""The README's first command on a real collection (default: cranfield).

index → retrieve → evaluate (BM25, dense, hybrid) → annotate: pairs of the retrieved candidates
→ judges → Elo → cross-query calibration → training targets. With the embedded default the
judges are simulated and driven by the collection's qrels (hidden relevance = graded gain), so
the annotation part checks the machinery on real candidate sets, not model quality; everything
it writes is labelled SIMULATION. `annotate.judges` in a config file swaps in real LLM judges
(docs/judging.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from zelo_ray.annotate.run import run_annotate
from zelo_ray.config import ZeloConfig
from zelo_ray.data import open_collection
from zelo_ray.eval.evaluate import evaluate_with_config
from zelo_ray.eval.metrics import judged_queries, per_query_metrics
from zelo_ray.retrieval.indexing import index_paths, run_index
from zelo_ray.retrieval.pipeline import run_retrieve

__all__ = ["run_quickstart"]


def run_quickstart(cfg: ZeloConfig, *, log=print) -> dict:
    timings = {}
    t0 = time.perf_counter()
    log(f"[1/4] index {cfg.data.dataset} (BM25 with Tantivy, {cfg.index.model} vectors in LanceDB)")
    idx = run_index(cfg)
    timings["index_s"] = round(time.perf_counter() - t0, 1)
    log(f"      {idx['docs']} documents; dense: {idx['dense']}; bm25: {idx['bm25']}")
    t0 = time.perf_counter()
    log("[2/4] retrieve: BM25 top-k + dense top-k, fused by RRF")
    ret = run_retrieve(cfg)
    timings["retrieve_s"] = round(time.perf_counter() - t0, 1)
    log(f"      {ret['rows']} candidates for {ret['queries']} queries -> {ret['candidates']}")
    col = open_collection(index_paths(cfg).data)
    split = cfg.data.split
    t0 = time.perf_counter()
    metrics = evaluate_with_config(col, split, ret["candidates"], cfg.evaluate)
    timings["evaluate_s"] = round(time.perf_counter() - t0, 1)
    log(f"[3/4] evaluate on qrels/{split} ({metrics['meta']['judged_queries']} judged queries):")
    for system in ("bm25", "dense", "hybrid"):
        m = metrics[system]
        log("      " + f"{system:7s}" + "  ".join(
            f"{k} {m[k]['mean']:.3f} [{m[k]['ci_low']:.3f}, {m[k]['ci_high']:.3f}]"
            for k in ("ndcg@10", "recall@100", "mrr@10")))
    t0 = time.perf_counter()
    qrels = col.qrels(split)
    judges = ", ".join(f"{j.name} ({j.kind})" for j in cfg.annotate.judges)
    log(f"[4/4] annotate the top-{cfg.annotate.top_n} candidates: pairs → judges [{judges}] → Elo → "
        "calibration → targets")
    ann = run_annotate(cfg, log_fn=log)
    timings["annotate_s"] = round(time.perf_counter() - t0, 1)
    table = pq.read_table(ann["files"]["zelo"])
    runs: dict[str, list[str]] = {}
    qcol = table["query_id"].to_pylist()
    dcol = table["doc_id"].to_pylist()
    for i in np.lexsort((-table["elo"].to_numpy(), np.asarray(qcol, object))):
        runs.setdefault(qcol[i], []).append(dcol[i])
    elo_ndcg = per_query_metrics(qrels, runs, judged_queries(qrels))["ndcg@10"]
    elo_ndcg10 = float(np.mean(list(elo_ndcg.values()))) if elo_ndcg else float("nan")
    tag = f"[{ann['label']}] " if ann["label"] else ""
    cal = ann["calibration"]
    log(f"      {tag}{ann['judge_calls']:,} judge calls ({ann['asked_this_run']:,} asked now, "
        f"{ann['missing_votes']:,} missing); Elo ({cfg.elo.model}) converged for "
        f"{ann['elo']['converged_queries']}/{ann['elo']['queries']} queries; nDCG@10 of the Elo "
        f"ranking {elo_ndcg10:.3f}" + (" (simulated judges see the qrels: an upper bound, not a model "
                                        "result)" if ann["label"] else ""))
    if cal.get("enabled"):
        log(f"      calibration: {cal['cross_pairs']} cross-query pairs, offset s.d. "
            f"{cal.get('offset_sd', 0):.3f}; it reorders {100 * cal.get('cross_query_pairs_reordered', 0):.1f}% "
            "of cross-query document pairs")
    workdir = Path(cfg.workdir())
    report = {"dataset": col.name, "split": split, "index": idx, "retrieve": ret, "metrics": metrics,
              "annotation": {**{k: ann[k] for k in ("label", "queries", "pairs", "cross_pairs", "judge_calls",
                                                    "missing_votes", "total_cost", "elo", "calibration",
                                                    "files")},
                             "elo_ndcg@10": round(elo_ndcg10, 4)},
              "timings": timings}
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {workdir / 'metrics.json'}, {workdir / 'report.json'}, {ann['files']['zelo']} "
        f"(targets), {Path(ann['files']['zelo']).parent / 'report.json'} (judging report)")
    return report
