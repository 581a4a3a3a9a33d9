"""Single-process training without Ray: the baseline of the Ray Train overhead benchmark, and the
path of the GPU check script (the GPU machine has PyTorch and transformers but no Ray).

Same step, same data order, same schedule as the Ray Train worker; no checkpoints in between.
"""

from __future__ import annotations

import time

import pyarrow as pa
import torch

from zelo_ray.train.loop import Meter, StepRunner, group_batches
from zelo_ray.scoring.models import load_reranker, save_reranker

__all__ = ["train_plain"]


def train_plain(groups: pa.Table, *, base: str, loss: str = "mse", batch_size: int = 16, group_size: int = 8,
                epochs: float = 1.0, max_steps: int | None = None, lr: float = 5e-5, weight_decay: float = 0.01,
                warmup_ratio: float = 0.1, max_length: int = 128, precision: str = "fp32", device: str = "cpu",
                seed: int = 0, kind: str = "auto", out: str | None = None, log=print, log_every: int = 50,
                card: dict | None = None) -> dict:
    torch.manual_seed(seed)
    gpb = batch_size // group_size
    spe = groups.num_rows // gpb
    if spe == 0:
        raise ValueError(f"{groups.num_rows} groups are fewer than one batch of {gpb}")
    total = max(1, int(round(spe * epochs)))
    if max_steps:
        total = min(total, max_steps)
    model = load_reranker(base, kind).to(device)
    runner = StepRunner(model, loss=loss, lr=lr, weight_decay=weight_decay, warmup_steps=int(warmup_ratio * total),
                        total_steps=total, max_length=max_length, precision=precision, device=device)
    model.train()
    step, meter, t0 = 0, Meter(), time.perf_counter()
    while step < total:
        for batch in group_batches(groups, gpb):
            meter.add(runner.step(batch), gpb * group_size)
            step += 1
            if step % log_every == 0 or step == total:
                m = meter.summary()
                log(f"[train] step {step}/{total} loss {m['loss']:.4f} {m['samples_per_s']:.1f} samples/s")
                meter.reset()
            if step >= total:
                break
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    result = {"steps": total, "samples": runner.samples, "wall_s": wall, "samples_per_s": runner.samples / wall}
    if out:
        save_reranker(model, out, {**(card or {}), "plain_training": result,
                                   "train_config": {"loss": loss, "max_length": max_length, "lr": lr,
                                                    "batch_size": batch_size, "epochs": epochs}})
    result["model"] = model
    return result
