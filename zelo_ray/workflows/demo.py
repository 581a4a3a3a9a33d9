"""The README's first command on a real collection (default: cranfield).

index → retrieve (BM25, dense, hybrid) → split the queries into train and test → annotate the
training queries' candidates: pairs → judges → Elo → cross-query calibration → targets → train
a reranker with Ray Train → rerank the test queries' candidates and evaluate every system on
them. With the embedded default the judges are simulated and driven by the training queries'
qrels (hidden relevance = graded gain); everything they produce is labelled SIMULATION. `annotate.judges` in a config file swaps in real LLM judges
(docs/judging.md).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.annotate.run import run_annotate
from zelo_ray.config import ZeloConfig
from zelo_ray.data import open_collection
from zelo_ray.eval.splits import query_split, training_qrels_split
from zelo_ray.eval.table import metrics_lines
from zelo_ray.retrieval.indexing import run_index
from zelo_ray.retrieval.pipeline import run_retrieve
from zelo_ray.layout import layout
from zelo_ray.raysession import verbose
from zelo_ray.runlog import link_ray_logs
from zelo_ray.storage import write_json
from zelo_ray.ticker import timed
from zelo_ray.workflows.report import write_report

__all__ = ["run_quickstart"]


def _evaluate_step(cfg: ZeloConfig, col, split: dict, ckpt: str, ann: dict, meta: dict, log) -> dict:
    from zelo_ray.eval.rerank import evaluate_reranker

    log(f"[6/6] evaluate on the {len(split['test'])} held-out test queries (qrels/{cfg.data.split})")
    ckpts = {"reranker": ckpt}
    base = layout(cfg).train / "base"
    if (base / "zelo_fusion.json").exists():  # the untrained base, prepared by the train stage
        ckpts["fusion_only"] = str(base)
    metrics = evaluate_reranker(cfg, col, split["test"], ckpts, log=log, out=layout(cfg).train,
                                model_only={"fusion_only": "base_model_only"}, embedder={"reranker": "tuned"},
                                paired=[("reranker", "fusion_only"), ("reranker_model_only", "base_model_only"),
                                        ("dense_tuned", "dense")])
    rows = [n for n in ("bm25", "dense", "hybrid", "dense_tuned", "hybrid_tuned", "fusion_only", "base_model_only",
                        "reranker", "reranker_model_only") if n in metrics]
    for line in metrics_lines(metrics, rows, digits=3, indent="      ", width=16,
                              labels={"reranker_model_only": "model only", "base_model_only": "base model only"}):
        log(line)
    d = metrics["reranker"]["delta_vs_hybrid"]["ndcg@10"]
    log(f"      reranker − hybrid nDCG@10: {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
        f"(paired bootstrap, {int(cfg.evaluate.confidence * 100)}%)" + (
            f"  — {ann['label']}: judges simulated from the training queries' qrels" if ann["label"] else ""))
    for pair, d in metrics["paired"].items():
        log(f"      {pair.replace('-', ' − ')} nDCG@10: {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
            " (what training adds)")
    if "dense_tuned" in metrics:
        log("      dense_tuned / hybrid_tuned: first-stage retrieval with the trained query tower (the tuned "
            "embedding model) over the index's vectors")
    return {**{k: metrics[k] for k in rows}, "paired": metrics["paired"], "meta": meta,
            "failed": metrics["failed"]["reranker"],
            "per_query": {"ndcg@10": {k: metrics["per_query"][k] for k in rows}}}


def _index_line(idx: dict) -> str:
    dense, bm25 = idx["dense"], idx["bm25"]
    d = ("dense index up to date" if dense.get("skipped") else
         f"dense: {dense['embedded']:,} embedded in {dense['embed_s']:.0f} s ({dense['docs_per_s'] or 0:.1f} docs/s)")
    b = ("BM25 index up to date" if bm25.get("skipped") else f"BM25: {bm25['docs']:,} indexed in {bm25['seconds']:.1f} s")
    return f"{d}; {b}" + (f"; ANN index {dense['ann']}" if dense.get("ann") else "")


def run_quickstart(cfg: ZeloConfig, *, log=print, after_stage=None) -> dict:
    """index → retrieve → evaluate → split queries → annotate the training queries → train →
    rerank and evaluate the test queries. Writes ``<workdir>/metrics.json`` and ``report.json``.
    ``after_stage(name)`` runs after each stage (the full pipeline pushes the run directory to
    ``data.output_uri`` there, so a crash later loses no finished stage)."""
    after_stage = after_stage or (lambda name: None)
    timings: dict = {}
    with timed(timings, "index_s", 1):
        idx = _index_step(cfg, log)
    after_stage("index")
    with timed(timings, "retrieve_s", 1):
        ret = _retrieve_step(cfg, log)
    after_stage("retrieve")
    col = open_collection(layout(cfg).data)
    split = query_split(cfg, col)
    log(f"[3/6] queries: {len(split['train'])} train / {len(split['test'])} test ({split['source']})")
    with timed(timings, "annotate_s", 1):
        ann = _annotate_step(cfg, col, split, log)
    after_stage("annotate")
    with timed(timings, "train_s", 1):
        card = _train_step(cfg, split, log)
    after_stage("train")
    with timed(timings, "evaluate_s", 1):
        metrics = _metrics_step(cfg, col, split, ann, log)
    report = {"dataset": col.name, "split": split, "index": idx, "retrieve": ret, "metrics": metrics,
              "annotation": {k: ann[k] for k in ("label", "queries", "pairs", "cross_pairs", "judge_calls",
                                                 "missing_votes", "total_cost", "elo", "calibration", "files")},
              "training": {k: card.get(k) for k in ("fingerprint", "final_metrics", "wall_s", "total_steps",
                                                    "training_groups")},
              "timings": timings, "failed_records": _failed_records(ret, ann, card, metrics, log)}
    _write_outputs(cfg, metrics, report, log)
    return report


def _index_step(cfg: ZeloConfig, log) -> dict:
    log(f"[1/6] index {cfg.data.dataset} (BM25 with Tantivy, {cfg.index.model} vectors in LanceDB)")
    idx = run_index(cfg)
    log(f"      {idx['docs']:,} documents; {_index_line(idx)}")
    return idx


def _retrieve_step(cfg: ZeloConfig, log) -> dict:
    log("[2/6] retrieve: BM25 top-k + dense top-k, fused by RRF")
    ret = run_retrieve(cfg)
    log(f"      {ret['rows']} candidates for {ret['queries']} queries -> {ret['candidates']}"
        + (f"; {ret['failed']['failed']} queries failed (listed in {ret['failed']['errors']})"
           if ret["failed"]["failed"] else ""))
    return ret


def _annotate_step(cfg: ZeloConfig, col, split: dict, log) -> dict:
    """Judge the training queries' candidates; simulated judges see those queries' qrels only."""
    train_qrels = None
    if col.splits:
        qrels_table = pq.read_table(col.qrels_path(training_qrels_split(cfg, col)))
        # the simulated judges see the training queries' qrels only: nothing about test queries leaks
        train_qrels = qrels_table.filter(pc.is_in(qrels_table["query_id"], value_set=pa.array(split["train"])))
    elif any(j.simulated for j in cfg.annotate.judges):
        raise ValueError(f"{col.root}: this collection has no qrels, and simulated judges are driven by qrels; "
                         "configure LLM judges in annotate.judges (docs/judging.md)")
    judges = ", ".join(f"{j.name} ({j.kind})" for j in cfg.annotate.judges)
    log(f"[4/6] annotate the training queries' top-{cfg.annotate.top_n}: pairs → judges [{judges}] → Elo → "
        "calibration → targets")
    ann = run_annotate(cfg, log_fn=log, qrels=train_qrels, queries=split["train"])
    tag = f"[{ann['label']}] " if ann["label"] else ""
    log(f"      {tag}{ann['judge_calls']:,} judge calls ({ann['asked_this_run']:,} asked now, "
        f"{ann['missing_votes']:,} missing); Elo ({cfg.elo.model}) converged for "
        f"{ann['elo']['converged_queries']}/{ann['elo']['queries']} queries")
    return ann


def _train_step(cfg: ZeloConfig, split: dict, log) -> dict:
    from zelo_ray.train.query_tower import effective_config
    from zelo_ray.train.stage import run_train_stage

    base = "all-MiniLM-L6-v2" if cfg.train.base == "default" else cfg.train.base
    tcfg = effective_config(cfg.train)
    log(f"[5/6] train a reranker on the zELO targets: {base}"
        + (" (query tower)" if tcfg.towers == "query" else "") + f", {tcfg.loss} loss, Ray Train "
        f"({cfg.train.num_workers} worker(s))")
    return run_train_stage(cfg, log=log, split=split)


def _metrics_step(cfg: ZeloConfig, col, split: dict, ann: dict, log) -> dict:
    ckpt = str(layout(cfg).model)
    meta = {"dataset": col.name, "split": cfg.data.split, "test_queries": len(split["test"]),
            "train_queries": len(split["train"]), "query_split": split["source"], "rerank_depth": cfg.rerank.depth,
            "checkpoint": ckpt, "label": ann["label"], "bootstrap": cfg.evaluate.bootstrap,
            "confidence": cfg.evaluate.confidence}
    if not split["test"]:
        log("[6/6] no qrels: nothing to evaluate against (every query trained the reranker); "
            "`zelo bench labelfree` compares systems on zELO labels instead")
        return {"meta": {**meta, "note": "no qrels in the collection: no labelled evaluation"}}
    return _evaluate_step(cfg, col, split, ckpt, ann, meta, log)


def _failed_records(ret: dict, ann: dict, card: dict, metrics: dict, log) -> dict:
    """Each stage's failed records (the summary line says how many; the errors tables say which)."""
    failed = {"retrieve": ret["failed"], "annotate": ann["failed"],
              "examples": card.get("failed_training_queries", 0), "rerank": metrics.get("failed")}
    counts = {"retrieve": ret["failed"]["failed"], "annotate": ann["failed"]["failed"],
              "examples": failed["examples"], "rerank": (failed["rerank"] or {}).get("failed", 0)}
    if any(counts.values()):
        log("      failed records (skipped, listed in each stage's errors table; a re-run retries them): "
            + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return failed


def _write_outputs(cfg: ZeloConfig, metrics: dict, report: dict, log) -> None:
    run = layout(cfg)
    write_json(run.metrics, metrics)
    write_json(run.report, report)
    ray_link = link_ray_logs(run.workdir)
    log(f"wrote {run.metrics} and {run.report.name}; logs: {run.workdir / 'logs'} (zelo.log"
        + (", ray/ = Ray's worker logs" if ray_link else "") + ("" if verbose() else "; zelo --verbose shows them here") + ")")
    log(f"report: {write_report(run.workdir, paths=run)}")
