"""Driver side of training: training rows → Ray Train ``TorchTrainer`` → the final model folder.

``train_reranker`` is resumable: the Ray Train run is named by a hash of the training config and
the data, so re-running the same command after a crash or kill continues from the last
checkpoint, and re-running after success returns the finished model without training.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq

from zelo_ray.config import TrainConfig
from zelo_ray.reuse import saved_if_unchanged
from zelo_ray.scoring.kinds import CARD
from zelo_ray.train.worker import DS_DIR, STATE_FILE, train_loop_per_worker

__all__ = ["plan_steps", "train_fingerprint", "train_reranker"]

# settings that change what is learned (not where it is written or how often it logs)
_LEARNING_FIELDS = ("base", "kind", "towers", "query_tower", "loss", "target", "max_length", "group_size", "batch_size", "epochs",
                    "max_steps", "lr", "weight_decay", "warmup_ratio", "grad_clip", "candidates_per_query",
                    "num_workers", "deepspeed_stage", "lora_r", "seed")


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


VALIDATION_CRITERION = "val_score-v1"  # r with zELO scores when present (worker.validate)


def train_fingerprint(tcfg: TrainConfig, examples: Path, validation: dict | None = None) -> str:
    learn = {k: getattr(tcfg, k) for k in _LEARNING_FIELDS}
    # which checkpoint becomes the model depends on the validation queries and the criterion
    picked = [VALIDATION_CRITERION, sorted(validation["query_ids"]), bool(validation.get("elo"))] if validation else None
    blob = json.dumps({"train": learn, "data": _file_digest(examples), **({"validation": picked} if picked else {})},
                      sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def plan_steps(n_groups: int, tcfg: TrainConfig) -> tuple[int, int, int]:
    """(groups per batch, steps per epoch per worker, total steps)."""
    gpb = tcfg.batch_size // tcfg.group_size
    if getattr(tcfg, "towers", "both") == "query":
        # one row per query: a collection with fewer fitting queries than a step holds still trains
        gpb = max(1, min(gpb, n_groups // tcfg.num_workers))
    spe = n_groups // (gpb * tcfg.num_workers)
    if spe == 0:
        raise ValueError(f"{n_groups} training groups are fewer than one batch per worker "
                         f"({gpb} groups × {tcfg.num_workers} workers); lower train.batch_size or add queries")
    total = max(1, int(round(spe * tcfg.epochs)))
    if tcfg.max_steps is not None:
        total = min(total, tcfg.max_steps)
    return gpb, spe, total


def train_reranker(tcfg: TrainConfig, examples: str | Path, out_dir: str | Path, *, card: dict | None = None,
                   log=print, ray_cfg=None, validation: dict | None = None, callbacks: list | None = None,
                   run_cfg=None, inject: list[str] = ()) -> dict:
    """Train on ``examples`` (query groups, see examples.py); the model lands in ``out_dir/model``.
    ``run_cfg``: the run's :class:`~zelo_ray.config.ZeloConfig`, which says where workers on other
    nodes read the examples and where checkpoints go (:mod:`zelo_ray.reach`); without it, local
    paths (one machine). ``inject``: ``errors.inject`` (``"train:step-N"`` fails a worker at step N)."""
    examples, out_dir = Path(examples), Path(out_dir).resolve()
    model_dir = out_dir / "model"
    fp = train_fingerprint(tcfg, examples, validation)
    done = saved_if_unchanged(model_dir / CARD, fp, field="fingerprint")
    if done is not None:
        log(f"      {model_dir} was trained with this config and data already (fingerprint {fp}); reusing it")
        return done
    loop_cfg, total = _loop_config(tcfg, examples, fp, card, validation, inject, log, out_dir)
    if tcfg.deepspeed_stage and not tcfg.use_gpu:
        _prepare_deepspeed_cpu(log)
    result, history, elapsed = _fit(tcfg, examples, out_dir, loop_cfg, fp, validation, callbacks, ray_cfg,
                                    run_cfg, log)
    chosen, chosen_metrics = _chosen(result, validation)
    final = _write_model(chosen, out_dir, {"fingerprint": fp, "final_metrics": result.metrics,
                                           "wall_s": round(elapsed, 1), "total_steps": total, "history": history,
                                           **_validation_card(validation, chosen_metrics, result.metrics)})
    log(f"      trained {total} steps in {elapsed:.0f}s (loss {result.metrics.get('loss', float('nan')):.4f})"
        f"{_choice_line(validation, chosen_metrics)}; model → {model_dir}")
    return final


def _loop_config(tcfg: TrainConfig, examples: Path, fp: str, card: dict | None, validation: dict | None,
                 inject, log, out_dir: Path) -> tuple[dict, int]:
    """What every worker gets (the settings, the step plan, the card to save), and the step count."""
    n_groups = pq.ParquetFile(examples).metadata.num_rows
    gpb, spe, total = plan_steps(n_groups, tcfg)
    card = {"fingerprint": fp, "train_config": tcfg.model_dump(), "examples": str(examples),
            "training_groups": n_groups, **(card or {})}
    loop_cfg = {**tcfg.model_dump(), "groups_per_batch": gpb, "steps_per_epoch": spe, "total_steps": total,
                "card": card, "inject": [x for x in inject if x.startswith("train:")]}
    if validation is not None:
        loop_cfg["validation"] = validation
    rows = (f"{n_groups:,} queries × their candidates" if tcfg.towers == "query" else
            f"{n_groups:,} query groups × {tcfg.group_size} docs")
    log(f"      {rows}; {total} steps of {gpb * tcfg.group_size} rows × "
        f"{tcfg.num_workers} worker(s) ({tcfg.loss} loss, {tcfg.deepspeed_stage and f'ZeRO-{tcfg.deepspeed_stage}' or 'DDP'}"
        f", {'GPU' if tcfg.use_gpu else 'CPU'}); checkpoints every {tcfg.checkpoint_every} steps in {out_dir / 'ray'}")
    return loop_cfg, total


def _fit(tcfg: TrainConfig, examples: Path, out_dir: Path, loop_cfg: dict, fp: str, validation, callbacks,
         ray_cfg, run_cfg, log):
    """Ray Train's run: (its result, the workers' progress records, wall seconds)."""
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from zelo_ray.raysession import ensure_ray
    from zelo_ray.relay import LineRelay

    ensure_ray(ray_cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # a resumed worker skips the batches it already saw
    source, storage = str(examples), str(out_dir / "ray")
    if run_cfg is not None:
        from zelo_ray.reach import checkpoint_storage, for_workers

        source = for_workers(run_cfg, examples, what="train")
        storage = checkpoint_storage(run_cfg, out_dir / "ray")
        if storage != str(out_dir / "ray"):
            log(f"      several nodes: examples read from {source}, checkpoints kept in {storage}")
    # Read before the workers start: once they hold every CPU, a read task could never be
    # scheduled (Ray Data gets no budget); the groups then stream from the object store.
    ds = ray.data.read_parquet(source).materialize()
    # the workers' progress lines reach this console through the relay (their output is not copied)
    with LineRelay(log) as relay:
        loop_cfg["relay"] = relay.queue
        trainer = TorchTrainer(
            train_loop_per_worker, train_loop_config=loop_cfg, datasets={"train": ds},
            scaling_config=ScalingConfig(num_workers=tcfg.num_workers, use_gpu=tcfg.use_gpu,
                                         resources_per_worker={"CPU": tcfg.cpus_per_worker}),
            run_config=RunConfig(name=f"reranker-{fp}", storage_path=storage,
                                 checkpoint_config=CheckpointConfig(
                                     num_to_keep=tcfg.keep_checkpoints,
                                     # with validation, the kept checkpoints are the best ones
                                     checkpoint_score_attribute="val_score" if validation else None),
                                 failure_config=FailureConfig(max_failures=tcfg.max_failures),
                                 callbacks=callbacks))
        t0 = time.perf_counter()
        result = trainer.fit()
        elapsed = time.perf_counter() - t0
    if result.error:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    return result, relay.records, elapsed


def _chosen(result, validation: dict | None):
    """The checkpoint to keep: the best validated one (step 0, the base, included), else the last."""
    chosen, chosen_metrics = result.checkpoint, result.metrics
    if validation:
        best = max(((c, m) for c, m in (result.best_checkpoints or []) if m.get("val_score") == m.get("val_score")),
                   key=lambda cm: cm[1]["val_score"], default=None)
        if best is not None:
            chosen, chosen_metrics = best
    return chosen, chosen_metrics


def _choice_line(validation: dict | None, chosen: dict) -> str:
    if not validation:
        return ""
    what = "r with zELO scores" if "val_r" in chosen else "nDCG@10"
    return (f"; validation ({len(validation['query_ids'])} held-out queries) keeps step {chosen.get('step')} "
            f"({what} {chosen.get('val_score', float('nan')):.4f})"
            + (": the base model, fitting did not help" if chosen.get("step") == 0 else ""))


def _validation_card(validation: dict | None, chosen: dict, last: dict) -> dict:
    if not validation:
        return {}
    return {"validation": {"queries": len(validation["query_ids"]), "grades": "zELO (labelfree.graded_qrels)",
                           "criterion": "val_r (mean Pearson r of the model's logits with the zELO scores)"
                           if "val_r" in chosen else "val_ndcg@10",
                           "best_step": chosen.get("step"), "val_ndcg@10": chosen.get("val_ndcg@10"),
                           "val_r": chosen.get("val_r"), "last_step": last.get("step"),
                           "last_val_ndcg@10": last.get("val_ndcg@10"), "last_val_r": last.get("val_r")}}


def _write_model(chosen, out_dir: Path, card: dict) -> dict:
    """The chosen checkpoint as ``out_dir/model`` (optimiser state dropped), its card completed;
    swapped in whole, so a crash leaves the old model or the new."""
    tmp, model_dir = out_dir / "model.tmp", out_dir / "model"
    shutil.rmtree(tmp, ignore_errors=True)
    # to_directory: the checkpoint may be on object storage (several nodes), not on this disk
    chosen.to_directory(str(tmp))
    (tmp / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(tmp / DS_DIR, ignore_errors=True)
    final = {**json.loads((tmp / CARD).read_text()), **card}
    (tmp / CARD).write_text(json.dumps(final, indent=2, default=str))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.replace(model_dir)
    return final


def _prepare_deepspeed_cpu(log) -> None:
    """Build DeepSpeed's CPU op once, before the workers would each try (train/ds_ops.py) — in a
    child process: the driver never needs the op, and a process that loaded it can crash in its
    native exit handlers."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("deepspeed") is None:  # the same message the workers give
        raise ImportError("train.deepspeed_stage > 0 needs the 'deepspeed' extra: pip install -e '.[deepspeed]'")
    code = "from zelo_ray.train.ds_ops import prepare_cpu_ops; prepare_cpu_ops()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [x for x in r.stdout.splitlines() if x.strip().startswith(("built ", "removed "))]
    for line in lines:
        log(line)
    if r.returncode:
        raise RuntimeError(f"preparing DeepSpeed's CPU op failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
