"""Training throughput: Ray Train (N CPU workers, DDP over gloo) against a plain single-process
PyTorch loop on the same model, data and number of samples, in one run.

Both sides use every core (plain: one process with all threads; Ray: N workers × cores/N
threads). Ray is timed two ways: the steady-state loop (from the workers' own clock, excluding
start-up) and the whole ``fit()`` (worker start, data split, checkpoint, export).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa


def _groups(n_groups: int, group_size: int, seed: int = 0) -> pa.Table:
    """Real cranfield texts with random targets (throughput does not depend on the labels)."""
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cranfield"
    docs = [json.loads(x) for x in open(shared / "corpus.jsonl")]
    qs = [json.loads(x)["text"] for x in open(shared / "queries.jsonl")]
    rng = np.random.default_rng(seed)
    rows = {"query_id": [], "query": [], "doc_ids": [], "docs": [], "targets": [], "elo": []}
    for g in range(n_groups):
        idx = rng.choice(len(docs), group_size, replace=False)
        rows["query_id"].append(f"q{g}")
        rows["query"].append(qs[g % len(qs)])
        rows["doc_ids"].append([str(docs[i]["_id"]) for i in idx])
        rows["docs"].append([f"{docs[i].get('title', '')}. {docs[i]['text']}" for i in idx])
        rows["targets"].append(rng.uniform(size=group_size).tolist())
        rows["elo"].append(rng.normal(size=group_size).tolist())
    return pa.table(rows)


def run(*, base: str = "default", steps: int = 40, batch_size: int = 16, group_size: int = 8, max_length: int = 128,
        workers: int = 2, log=print) -> dict:
    import pyarrow.parquet as pq
    import torch

    from zelo_ray.config import RayConfig, TrainConfig
    from zelo_ray.train.plain import train_plain
    from zelo_ray.train.trainer import train_reranker

    cores = os.cpu_count() or 1
    gpb = batch_size // group_size
    groups = _groups(steps * gpb, group_size)
    samples = steps * batch_size
    torch.set_num_threads(cores)
    log(f"plain PyTorch: {steps} steps × {batch_size} rows, {cores} threads")
    p = train_plain(groups, base=base, batch_size=batch_size, group_size=group_size, max_steps=steps, epochs=1,
                    max_length=max_length, log=log, log_every=10)
    p.pop("model")
    with tempfile.TemporaryDirectory() as tmp:
        ex = Path(tmp) / "groups.parquet"
        pq.write_table(groups, ex)
        t = TrainConfig(base=base, batch_size=batch_size, group_size=group_size, epochs=1, max_length=max_length,
                        num_workers=workers, cpus_per_worker=max(0.1, cores / workers - 0.05),
                        threads_per_worker=max(1, cores // workers), checkpoint_every=10**6, log_every=10)
        log(f"Ray Train: {workers} workers × {t.threads_per_worker} threads, {steps // workers} steps each")
        t0 = time.perf_counter()
        card = train_reranker(t, ex, Path(tmp) / "out", log=log, ray_cfg=RayConfig(num_cpus=cores))
        fit_s = time.perf_counter() - t0
    m = card["final_metrics"]
    ray_samples = m["step"] * batch_size * workers
    ray_loop = ray_samples / m["elapsed_s"]
    res = {"benchmark": "train_throughput", "model": base, "max_length": max_length, "batch_size": batch_size,
           "samples": samples, "cores": cores,
           "plain": {"samples_per_s": round(p["samples_per_s"], 2), "wall_s": round(p["wall_s"], 1)},
           "ray": {"workers": workers, "samples": ray_samples, "loop_samples_per_s": round(ray_loop, 2),
                   "loop_s": round(m["elapsed_s"], 1), "fit_wall_s": round(fit_s, 1),
                   "fit_samples_per_s": round(ray_samples / fit_s, 2)},
           "overhead_loop": round(1 - ray_loop / p["samples_per_s"], 4),
           "overhead_whole_fit": round(1 - (ray_samples / fit_s) / p["samples_per_s"], 4),
           "target_overhead": 0.15}
    log(json.dumps(res, indent=1))
    return res
