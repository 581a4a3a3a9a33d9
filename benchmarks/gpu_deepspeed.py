"""GPU check of DeepSpeed training at the paper's reranker sizes (issue #19): Qwen3-1.7B- and
Qwen3-4B-shaped "yes"-logit decoders (random weights: throughput only), sequence 512, bf16, on
one GPU: ZeRO-2 and ZeRO-3, full fine-tuning and LoRA (r 16) — samples/s, MFU, peak memory.

The training step is the one Ray Train workers run (`StepRunner` with the engine from
`zelo_ray.train.ds_ops.deepspeed_engine`), in one process with a one-rank process group: the GPU
machine has PyTorch and transformers but not Ray. DeepSpeed is installed there from wheels
carried with the working tree (`--wheels`, default runs/gpu/wheels; made here by
`pip wheel deepspeed==0.19.8 hjson ninja py-cpuinfo einops msgpack -w runs/gpu/wheels` and
`pip download peft==0.21.2 accelerate==1.15.0 --no-deps -d runs/gpu/wheels`).

    python -m benchmarks.gpu_deepspeed --out $OUT/gpu_deepspeed.json            # on the GPU
    python -m benchmarks.gpu_deepspeed --dry --out /tmp/gpu_deepspeed_dry.json  # CPU, tiny shapes

MFU = 6·N·T model FLOPs per sample (N matmul parameters without the embedding table, T tokens;
the attention term added as in gpu_train.py) × samples/s ÷ the chip's dense bf16 peak. LoRA skips
the weight gradients of the frozen base, so it does about two thirds of those FLOPs: its MFU is
quoted on the same 6·N·T convention (comparable with full fine-tuning's as "useful" throughput).
The JSON is rewritten after every configuration, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}
SHAPES = {  # the public Qwen3 configs: d, MLP, layers, heads, KV heads (head_dim 128, vocab 151,936, tied)
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151_936),
    "qwen3-4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151_936),
}
DRY_SHAPES = {
    "tiny-a": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, vocab_size=2048),
    "tiny-b": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=24, vocab_size=2048),
}


def ensure_installed(wheels: Path) -> None:
    """DeepSpeed and peft from the carried wheels when the machine lacks them (no network there)."""
    missing = []
    for module, pin in (("deepspeed", "deepspeed==0.19.8"), ("peft", "peft==0.21.2")):
        try:
            __import__(module)
        except ImportError:
            missing.append(pin)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                        *missing], check=True)


def one_rank_group(cuda: bool) -> None:
    if torch.distributed.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1)


def build(shape: dict, tokenizer, device: torch.device, dtype: torch.dtype):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from zelo_ray.scoring.models import Reranker

    cfg = Qwen3Config(**shape, max_position_embeddings=4096, tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(cfg).to(dtype)
    return Reranker(model, tokenizer, "decoder_yes", yes_id=9)


def matmul_params(model: torch.nn.Module) -> int:
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return sum(p.numel() for p in model.parameters()) - emb


def measure(name: str, shape: dict, stage: int, lora_r: int, *, tokenizer, device, batch: int, seq: int,
            steps: int, warmup: int, torch_adam: bool = False) -> dict:
    from zelo_ray.train.ds_ops import deepspeed_engine
    from zelo_ray.train.loop import StepRunner
    from zelo_ray.scoring.lora import apply_lora

    cuda = device.type == "cuda"
    scorer = build(shape, tokenizer, device, torch.bfloat16 if cuda else torch.float32)
    n = matmul_params(scorer.model)
    scorer = apply_lora(scorer, lora_r)
    trainable = sum(p.numel() for p in scorer.parameters() if p.requires_grad)
    cfg = {"batch_size": batch, "grad_clip": 1.0, "lr": 1e-5, "weight_decay": 0.0, "use_gpu": cuda,
           "deepspeed_stage": stage, "torch_adam": torch_adam or not cuda}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    engine = deepspeed_engine(scorer, cfg, total_steps=10**6, warmup=1, use_bf16=cuda)
    runner = StepRunner(scorer, loss="mse", lr=1e-5, weight_decay=0.0, warmup_steps=1, total_steps=10**6,
                        max_length=seq, precision="bf16" if cuda else "fp32", device=device, engine=engine)
    g = torch.Generator().manual_seed(0)
    enc = {"input_ids": torch.randint(10, shape["vocab_size"] - 1, (batch, seq), generator=g).to(device),
           "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=device)}
    scorer.tokenize = lambda q, d, m: enc  # the GPU step only; tokenisation is not what is measured
    rows = {"query": ["q"] * (batch // 8), "docs": [["d"] * 8] * (batch // 8),
            "targets": [[0.5] * 8] * (batch // 8), "elo": [[0.0] * 8] * (batch // 8)}
    losses = [runner.step(rows) for _ in range(warmup)]
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses += [runner.step(rows) for _ in range(steps)]
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    sps = batch * steps / dt
    d, layers = shape["hidden_size"], shape["num_hidden_layers"]
    flops = (6.0 * n * seq + 12.0 * layers * d * seq * seq) * sps
    peak = next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name()), None) if cuda else None
    out = {"model": name, "zero_stage": stage, "mode": f"lora r{lora_r}" if lora_r else "full",
           "optimizer": "torch AdamW" if torch_adam or not cuda else "DeepSpeed FusedAdam", "params_matmul": n, "params_trainable": trainable, "batch": batch, "tokens": seq, "steps": steps,
           "samples_per_s": round(sps, 2), "model_tflops": round(flops / 1e12, 2),
           "mfu": round(flops / peak, 4) if peak else None,
           "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
           "loss_first_last": [round(losses[0], 5), round(losses[-1], 5)]}
    del engine, runner, scorer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny shapes, a few steps: checks the script end to end")
    ap.add_argument("--wheels", default=str(ROOT / "runs/gpu/wheels"))
    ap.add_argument("--tokenizer", default=None, help="any local tokenizer folder (default: runs/gpu/model, "
                    "else the default MiniLM one); token ids are random, it is never called in the timed step")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--models", nargs="+", help="measure only these shapes (default: all)")
    ap.add_argument("--stages", nargs="+", type=int, default=[2, 3])
    ap.add_argument("--modes", nargs="+", choices=["full", "lora"], default=["full", "lora"],
                    help="one configuration per process avoids one engine's leftovers shrinking the next one's memory")
    args = ap.parse_args(argv)
    if not args.dry:
        ensure_installed(Path(args.wheels))
    from transformers import AutoTokenizer

    from zelo_ray.scoring.kinds import resolve_base

    cuda = torch.cuda.is_available() and not args.dry
    device = torch.device("cuda" if cuda else "cpu")
    tok_dir = args.tokenizer or (str(ROOT / "runs/gpu/model") if (ROOT / "runs/gpu/model").exists()
                                 else resolve_base("default"))
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    shapes = DRY_SHAPES if args.dry else SHAPES
    batch, seq, steps, warmup = (8, 32, 2, 1) if args.dry else (args.batch, args.seq, args.steps, args.warmup)
    one_rank_group(cuda)
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu (dry run)", "torch": torch.__version__,
              "dry": args.dry, "runs": []}
    try:
        import deepspeed

        result["deepspeed"] = deepspeed.__version__
    except ImportError:
        pass
    torch_adam = False
    for name, shape in shapes.items():
        if args.models and name not in args.models:
            continue
        for stage in args.stages:
            for lora_r in [{"full": 0, "lora": args.lora_r}[m] for m in args.modes]:
                t0 = time.perf_counter()
                kw = dict(tokenizer=tokenizer, device=device, batch=batch, seq=seq, steps=steps, warmup=warmup)
                try:
                    try:
                        r = measure(name, shape, stage, lora_r, torch_adam=torch_adam, **kw)
                    except (RuntimeError, OSError, ImportError, ValueError) as e:
                        if torch_adam or isinstance(e, torch.OutOfMemoryError):
                            raise
                        # FusedAdam is compiled on first use (nvcc, ninja): where that fails, torch's AdamW
                        print(f"FusedAdam unavailable ({type(e).__name__}: {str(e)[:300]}); using torch AdamW",
                              flush=True)
                        torch_adam = True
                        r = measure(name, shape, stage, lora_r, torch_adam=True, **kw)
                except Exception as e:  # one configuration failing (OOM, say) must not lose the others
                    r = {"model": name, "zero_stage": stage, "mode": f"lora r{lora_r}" if lora_r else "full",
                         "error": "OOM" if isinstance(e, torch.OutOfMemoryError) else f"{type(e).__name__}: {e}"[:500]}
                    gc.collect()
                    if cuda:
                        torch.cuda.empty_cache()
                r["wall_s"] = round(time.perf_counter() - t0, 1)
                result["runs"].append(r)
                print(json.dumps(r), flush=True)
                Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
