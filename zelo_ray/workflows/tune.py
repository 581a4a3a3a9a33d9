"""Ray Tune over loss, learning rate, Elo model, graph degree k and candidates per query, with
ASHA early stopping on validation nDCG@10 — the Train V2 + Tune pattern: each Tune trial is a
driver function that annotates with its settings (votes already paid for are reused through a
hard-linked copy of the vote store) and launches a ``TorchTrainer`` whose reports reach Tune
through ``TuneReportCallback``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.train.validation import validation_set
from zelo_ray.layout import layout, layout_at

__all__ = ["run_tune"]


def _trial(config: dict) -> None:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.train.examples import build_groups, write_examples
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.train.trainer import train_reranker

    cfg = ZeloConfig.model_validate(config["base_cfg"])
    trial_dir = Path(config["tune_dir"]) / f"trial-{tune.get_context().get_trial_id()}"
    cfg.elo.model, cfg.graph.k, cfg.annotate.top_n = config["elo_model"], config["k"], config["top_n"]
    cfg.train.loss, cfg.train.lr = config["loss"], config["lr"]
    trial = layout_at(trial_dir)
    cfg.annotate.output = str(trial.annotate)
    votes = trial.annotate / "votes"
    if not votes.exists() and Path(config["votes"]).exists():  # reuse paid-for votes, copy nothing
        shutil.copytree(config["votes"], votes, copy_function=os.link)
    from zelo_ray.data import open_collection

    col = open_collection(config["collection"])
    qt = pq.read_table(col.qrels_path(config["qrels_split"]))
    train_q = config["train_queries"]
    ann = run_annotate(cfg, log_fn=lambda *_: None, queries=train_q,
                       qrels=qt.filter(pc.is_in(qt["query_id"], value_set=pa.array(train_q))))
    z = pq.read_table(ann["files"]["zelo"])
    groups = build_groups(z, query_texts(col), doc_texts(col, z["doc_id"].to_pylist()),
                          group_size=cfg.train.group_size, candidates_per_query=cfg.train.candidates_per_query,
                          seed=cfg.train.seed)
    ex = write_examples(groups, trial_dir / "examples.parquet")
    train_reranker(cfg.train, ex, trial.train, log=lambda *_: None, validation=config["validation"],
                   callbacks=[TuneReportCallback()])


def run_tune(cfg: ZeloConfig, *, log=print) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from zelo_ray.data import open_collection
    from zelo_ray.raysession import ensure_ray
    from zelo_ray.eval.splits import query_split, seeded_split, training_qrels_split

    tc = cfg.tune
    for k in tc.graph_k:
        if k % 2:
            raise ValueError(f"tune.graph_k: k={k} must be even")
    col = open_collection(layout(cfg).data)
    split = query_split(cfg, col)
    train_q, val_q = seeded_split(split["train"], tc.val_fraction, cfg.split.seed + 1)
    if not train_q or not val_q:
        raise ValueError(f"tune.val_fraction={tc.val_fraction} leaves no training or no validation queries")
    qsplit = training_qrels_split(cfg, col)
    val = validation_set(col, layout(cfg).candidates, val_q, col.qrels(qsplit), cfg.rerank.depth)
    out = layout(cfg).tune.resolve()
    out.mkdir(parents=True, exist_ok=True)
    space = {"loss": tune.choice(tc.losses), "lr": tune.loguniform(tc.lr_min, tc.lr_max),
             "elo_model": tune.choice(tc.elo_models), "k": tune.choice(tc.graph_k), "top_n": tune.choice(tc.top_n),
             "base_cfg": cfg.model_dump(), "tune_dir": str(out), "votes": str(layout(cfg).annotate.resolve() / "votes"),
             "collection": str(layout(cfg).data.resolve()), "qrels_split": qsplit, "train_queries": train_q,
             "validation": val}
    log(f"[tune] {tc.num_samples} trials over loss {tc.losses}, lr [{tc.lr_min:g}, {tc.lr_max:g}], Elo "
        f"{tc.elo_models}, k {tc.graph_k}, top_n {tc.top_n}; {len(train_q)} training / {len(val_q)} validation "
        "queries; ASHA on val nDCG@10")
    ensure_ray(cfg.ray)
    tuner = tune.Tuner(
        # the trial driver mostly waits on its Train workers, which reserve their own CPUs
        tune.with_resources(_trial, {"CPU": 0.01}),
        param_space=space,
        tune_config=tune.TuneConfig(num_samples=tc.num_samples, max_concurrent_trials=tc.max_concurrent,
                                    scheduler=ASHAScheduler(metric="val_ndcg@10", mode="max",
                                                            grace_period=tc.grace_period,
                                                            reduction_factor=tc.reduction_factor)),
        run_config=tune.RunConfig(name="zelo-tune", storage_path=str(out / "ray")))
    results = tuner.fit()
    rows = []
    for r in results:
        c = r.config or {}
        rows.append({"loss": c.get("loss"), "lr": c.get("lr"), "elo_model": c.get("elo_model"), "k": c.get("k"),
                     "top_n": c.get("top_n"), "val_ndcg@10": (r.metrics or {}).get("val_ndcg@10"),
                     "steps": (r.metrics or {}).get("step"), "error": str(r.error) if r.error else None})
    ok = [r for r in rows if r["val_ndcg@10"] is not None and r["error"] is None]
    best = max(ok, key=lambda r: r["val_ndcg@10"]) if ok else None
    pq.write_table(pa.Table.from_pylist(rows), out / "results.parquet")
    (out / "best.json").write_text(json.dumps({"best": best, "trials": rows}, indent=2, default=str))
    if best:
        overrides = [f"train.loss={best['loss']}", f"train.lr={best['lr']:.3g}", f"elo.model={best['elo_model']}",
                     f"graph.k={best['k']}", f"annotate.top_n={best['top_n']}"]
        log(f"[tune] best val nDCG@10 {best['val_ndcg@10']:.4f}: " + " ".join(f"--set {o}" for o in overrides))
    return {"best": best, "trials": rows, "output": str(out)}
