"""DeepSpeed ZeRO-2 and ZeRO-3 on two CPU Ray Train workers: the loss falls, both stages give the
same model, a killed worker resumes from the ZeRO checkpoint, the exported folder holds exactly the
weights in DeepSpeed's own checkpoint, decoders train with LoRA and in full and serve; and the
orphaned build lock that once made DeepSpeed's init wait forever is removed, or named in an error.

Every test has a timeout: a hang fails the test instead of blocking the suite."""

import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import toy_groups as _toy_groups
from zelo_ray.config import RayConfig, TrainConfig
from zelo_ray.scoring.models import load_reranker, tiny_decoder, tiny_encoder

pytestmark = pytest.mark.timeout(600)

PAIRS = [("alpha", "alpha alpha text"), ("alpha", "gamma other text"), ("beta", "beta beta text")]


@pytest.fixture(scope="module")
def ray_local():
    import tempfile

    import ray

    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="zrds", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    pq.write_table(_toy_groups(64), root / "examples.parquet")
    return root, tiny_encoder(root / "enc", hidden=32, layers=1)


def _cfg(base, stage, **kw):
    return TrainConfig(base=str(base), batch_size=16, group_size=8, epochs=3, lr=3e-3, max_length=16, num_workers=2,
                       cpus_per_worker=0.5, checkpoint_every=8, log_every=4, deepspeed_stage=stage, precision="fp32",
                       max_failures=1, **kw)


def _losses(card):
    return [h["loss"] for h in card["history"] if "loss" in h]


def _score(folder):
    return load_reranker(str(folder)).score([p[0] for p in PAIRS], [p[1] for p in PAIRS], max_length=16).numpy()


def test_zero2_and_zero3_train_the_same_model_and_export_deepspeeds_weights(data, tmp_path, ray_local):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from zelo_ray.train.trainer import train_reranker

    root, tiny = data
    scores = {}
    for stage in (2, 3):
        out = tmp_path / f"zero{stage}"
        card = train_reranker(_cfg(tiny, stage), root / "examples.parquet", out, log=lambda *_: None,
                              ray_cfg=RayConfig(num_cpus=2))
        losses = _losses(card)
        assert card["total_steps"] == 48 and losses[-1] < 0.5 * losses[0], losses
        model = out / "model"
        assert not (model / "deepspeed").exists() and (model / "model.safetensors").exists()
        scores[stage] = _score(model)
        assert scores[stage][0] > 0.6 > 0.4 > scores[stage][1]          # it learned the task
        # the same weights read back from DeepSpeed's own checkpoint (ZeRO-3: the shards of both
        # ranks gathered by DeepSpeed's zero_to_fp32) score exactly like the exported folder
        last = sorted(p for p in (out / "ray").glob("*/checkpoint_*") if p.is_dir())[-1]
        state = get_fp32_state_dict_from_zero_checkpoint(str(last / "deepspeed"), tag="latest_step")
        ref = load_reranker(str(tiny))
        missing, unexpected = ref.load_state_dict(state, strict=False)
        assert not unexpected and not [k for k in missing if "position_ids" not in k], (missing, unexpected)
        got = ref.score([p[0] for p in PAIRS], [p[1] for p in PAIRS], max_length=16).numpy()
        assert np.allclose(got, scores[stage], atol=1e-6)
    # ZeRO-3 partitions the parameters as well as ZeRO-2's gradients and optimiser state: same math
    assert np.allclose(scores[2], scores[3], atol=1e-5)


def test_a_killed_zero3_worker_resumes_from_its_checkpoint(data, tmp_path, ray_local):
    from zelo_ray.train.trainer import train_reranker

    root, tiny = data
    t = _cfg(tiny, 3)
    said = []
    card = train_reranker(t, root / "examples.parquet", tmp_path / "out", log=said.append,
                          ray_cfg=RayConfig(num_cpus=2), inject=["train:step-13"])
    assert any("injected failure at step 13" in x for x in said), said         # a worker failed at step 13 ...
    assert any("resumed from the checkpoint at step 8/48" in x for x in said), said  # ... both came back at 8
    assert card["final_metrics"]["step"] == 48
    losses = _losses(card)
    assert losses[-1] < 0.5 * losses[0], losses
    s = _score(tmp_path / "out" / "model")
    assert s[0] > 0.6 > 0.4 > s[1]


@pytest.mark.parametrize("stage,lora_r", [(2, 4), (3, 0)], ids=["lora-zero2", "full-zero3"])
def test_a_decoder_trains_under_deepspeed_and_serves(stage, lora_r, tmp_path, ray_local):
    from zelo_ray.serve.engine import ScoringEngine
    from zelo_ray.train.trainer import train_reranker

    pq.write_table(_toy_groups(32), tmp_path / "examples.parquet")
    base = tiny_decoder(tmp_path / "dec", hidden=32, intermediate=64, layers=1, heads=2)
    t = _cfg(base, stage, lora_r=lora_r).model_copy(update={"epochs": 2, "max_length": 32, "lr": 1e-3})
    card = train_reranker(t, tmp_path / "examples.parquet", tmp_path / "out", log=lambda *_: None,
                          ray_cfg=RayConfig(num_cpus=2))
    losses = _losses(card)
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    model = tmp_path / "out" / "model"
    trained = load_reranker(str(model))
    assert trained.kind == "decoder_yes"
    if lora_r:  # the adapter is merged into the exported weights: no peft needed to serve them
        assert not list(model.glob("adapter_*"))
    engine = ScoringEngine.load(str(model), device="cpu")
    served = engine.score(engine.encode("alpha", ["alpha alpha text", "gamma other text"], max_doc_tokens=16))
    direct = trained.score(["alpha", "alpha"], ["alpha alpha text", "gamma other text"], max_length=32).numpy()
    assert np.isfinite(served).all() and np.allclose(served, direct, atol=1e-4)


def test_an_orphaned_build_lock_is_removed_and_a_live_one_times_out_with_its_path(tmp_path):
    """In a child process (a waiting build thread and a loaded op must not stay in the test process)."""
    import subprocess
    import sys

    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    code = """
import os, sys, time
from zelo_ray.train import ds_ops
lock = ds_ops.shm_op_lock()
assert lock is not None and lock.is_relative_to(sys.argv[1]), lock
lock.parent.mkdir(parents=True, exist_ok=True)
lock.touch()
hour_ago = time.time() - 3600
os.utime(lock, (hour_ago, hour_ago))
said = []
assert ds_ops.clear_stale_lock(lock, log=said.append) and not lock.exists() and "interrupted" in said[0]
lock.touch()  # a build that is "running" and never ends: the wait is bounded and says where
assert not ds_ops.clear_stale_lock(lock)  # a fresh lock is left alone
t0 = time.perf_counter()
try:
    ds_ops.prepare_cpu_ops(timeout_s=2, log=said.append)
except RuntimeError as e:
    print("RAISED", round(time.perf_counter() - t0, 1), e)
    os._exit(0)
os._exit(3)
"""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.search(r"RAISED ([\d.]+) .*still not built after 2 s: its build lock .*lock exists", r.stdout)
    assert found, r.stdout
    assert float(found.group(1)) < 30


def test_a_lora_model_exports_its_merged_weights_and_keeps_training(tmp_path):
    """A LoRA checkpoint is a plain model folder (no adapter files, no peft needed to load it)
    whose scores are the live adapted model's; the live model keeps its adapters."""
    import torch

    from zelo_ray.scoring.lora import apply_lora
    from zelo_ray.scoring.models import save_reranker

    base = tiny_decoder(tmp_path / "dec", hidden=32, intermediate=64, layers=1, heads=2)
    model = apply_lora(load_reranker(base), 4)
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapters something to merge
        for name, p in model.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    q, d = ["alpha", "beta"], ["alpha alpha text", "gamma other text"]
    live = model.score(q, d, max_length=32)
    out = save_reranker(model, tmp_path / "export", {"step": 1})
    assert not list(out.glob("adapter_*")) and (out / "config.json").exists()
    exported = load_reranker(str(out)).score(q, d, max_length=32)
    untouched = load_reranker(base).score(q, d, max_length=32)
    assert torch.allclose(live, exported, atol=1e-5) and not torch.allclose(live, untouched, atol=1e-3)
    assert any("lora_A" in n for n, _ in model.model.named_parameters())          # still training LoRA
    assert torch.allclose(model.score(q, d, max_length=32), live)


def test_the_gpu_deepspeed_check_runs_end_to_end_on_cpu_in_dry_mode(tmp_path):
    """benchmarks/gpu_deepspeed.py with tiny shapes on CPU: every model × ZeRO stage × LoRA/full
    configuration trains and is written to the JSON (the GPU run differs only in shapes and device)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "dry.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_deepspeed", "--dry", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert result["dry"] and result["deepspeed"] == "0.19.8"
    assert {(x["model"], x["zero_stage"], x["mode"]) for x in runs} == {
        (m, s, mode) for m in ("tiny-a", "tiny-b") for s in (2, 3) for mode in ("full", "lora r16")}
    assert all(x["samples_per_s"] > 0 and np.isfinite(x["loss_first_last"]).all() for x in runs), runs
    lora = [x for x in runs if x["mode"] != "full"]
    assert all(x["params_trainable"] < x["params_matmul"] for x in lora)
