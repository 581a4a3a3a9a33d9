"""DeepSpeed's compiled ops on CPU workers, built once and never waited on forever.

On CPU, DeepSpeed's communication backend JIT-compiles a shared-memory all-reduce op
(``deepspeed_shm_comm``) the first time a process initialises it. PyTorch's extension builder
guards the build directory with a ``lock`` file: whoever creates it builds, everyone else polls
until it disappears. A build that is killed (a timeout, Ctrl-C, an OOM kill — easy on a loaded
2-core machine where the first build competes for the cores) leaves the file behind, and from then on
every DeepSpeed start on that machine waits for it forever, silently. That is how the first
ZeRO test "hung in DeepSpeed's init" (reproduced: a stale lock file, and init waits past any
timeout).

So before DeepSpeed starts, :func:`prepare_cpu_ops` removes a lock older than any real build
and builds or loads the op in a thread with a deadline: a lock held by a build that is really
running is waited for, and a wait past the deadline is an error that names the lock file.
The driver runs it before the workers start (one build, not one per worker, and the console
says why the first run pauses); each worker runs it again (a node the driver is not on builds
its own copy).

    >>> from zelo_ray.train.ds_ops import stale
    >>> stale(age_s=3600.0, max_age_s=600.0), stale(age_s=5.0, max_age_s=600.0)
    (True, False)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

__all__ = ["clear_stale_lock", "deepspeed_config", "deepspeed_engine", "prepare_cpu_ops", "shm_op_lock", "stale"]

STALE_AFTER_S = 600.0
"""No build of this op takes ten minutes (19 s on 2 idle cores): a lock this old is an orphan."""


def stale(*, age_s: float, max_age_s: float = STALE_AFTER_S) -> bool:
    return age_s > max_age_s


def _builder():
    from deepspeed.accelerator import get_accelerator
    import deepspeed.ops

    b = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if b is None or not deepspeed.ops.__compatible_ops__.get(b.NAME, False):
        return None  # a GPU accelerator, or a CPU DeepSpeed cannot compile for: nothing to build
    return b


def shm_op_lock() -> Path | None:
    """The build lock of DeepSpeed's CPU all-reduce op (None when DeepSpeed does not build it)."""
    b = _builder()
    if b is None:
        return None
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(b.NAME, verbose=False)) / "lock"


def clear_stale_lock(lock: Path | None, *, max_age_s: float = STALE_AFTER_S, log=print) -> bool:
    """Remove ``lock`` when it is older than any real build; True when it was removed."""
    if lock is None:
        return False
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if not stale(age_s=age, max_age_s=max_age_s):
        return False
    lock.unlink(missing_ok=True)
    log(f"      removed {lock}: left {age / 60:.0f} min ago by a DeepSpeed op build that was interrupted "
        "(every DeepSpeed start would have waited for it forever)")
    return True


def prepare_cpu_ops(*, timeout_s: float = 900.0, max_age_s: float = STALE_AFTER_S, log=print) -> None:
    """Build or load DeepSpeed's CPU all-reduce op in this process within ``timeout_s``."""
    b = _builder()
    if b is None:
        return
    lock = shm_op_lock()
    clear_stale_lock(lock, max_age_s=max_age_s, log=log)
    box: dict = {}

    def load() -> None:
        try:
            b.load(verbose=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = exc

    t0 = time.perf_counter()
    worker = threading.Thread(target=load, name="deepspeed-op-build", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise RuntimeError(
            f"DeepSpeed's CPU op {b.NAME} is still not built after {timeout_s:.0f} s: its build lock {lock} "
            f"{'exists' if lock is not None and lock.exists() else 'is gone'}. If no other DeepSpeed "
            f"process on this machine (pid {os.getpid()} is this one) is compiling it, the lock was left by "
            "an interrupted build: delete it and start again")
    if "error" in box:
        raise RuntimeError(f"DeepSpeed could not build its CPU op {b.NAME} (needs a C++ compiler and the "
                           f"Python headers): {box['error']}") from box["error"]
    if time.perf_counter() - t0 > 5:
        log(f"      built DeepSpeed's CPU all-reduce op in {time.perf_counter() - t0:.0f} s (once per machine)")


def deepspeed_config(cfg: dict, total_steps: int, warmup: int, use_bf16: bool) -> dict:
    """The DeepSpeed config of a training run (``cfg``: the training loop's config dict)."""
    return {
        "train_micro_batch_size_per_gpu": cfg["batch_size"],
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg["grad_clip"] or 0.0,
        # torch_adam on CPU: no fused CUDA kernel to build (a GPU without nvcc can ask for it too)
        "optimizer": {"type": "AdamW", "params": {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"],
                                                  "torch_adam": cfg.get("torch_adam", not cfg["use_gpu"])}},
        "scheduler": {"type": "WarmupDecayLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": cfg["lr"], "warmup_num_steps": max(1, warmup),
            "total_num_steps": max(total_steps, warmup + 1), "warmup_type": "linear"}},
        "zero_optimization": {"stage": cfg["deepspeed_stage"]},
        "bf16": {"enabled": use_bf16},
        "steps_per_print": 10**9,
    }


def deepspeed_engine(model, cfg: dict, total_steps: int, warmup: int, use_bf16: bool):
    """A DeepSpeed engine around ``model`` in a process group that already exists (Ray Train's, or
    one the caller made): gloo on CPU, NCCL on GPU."""
    try:
        import deepspeed
    except ImportError as e:
        raise ImportError("train.deepspeed_stage > 0 needs the 'deepspeed' extra: "
                          "pip install -e '.[deepspeed]'") from e
    if not cfg["use_gpu"]:  # never wait forever on an orphaned build lock
        prepare_cpu_ops()
    deepspeed.init_distributed(dist_backend="nccl" if cfg["use_gpu"] else "gloo")
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=deepspeed_config(cfg, total_steps, warmup, use_bf16),
                                      dist_init_required=False)
    return engine
