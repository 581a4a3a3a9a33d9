"""GPU check of training (issue #5): pointwise training-step throughput at bf16 for all-MiniLM-L6-v2
and for a ~0.5B-parameter decoder built from config (random weights, zerank-style "yes" logit),
reported as samples/s and MFU; then, optionally, the proof benchmark's training phase.

For the GPU machine: PyTorch + transformers, no Ray, no vLLM, no network. Inputs prepared here:
    runs/gpu/model/        all-MiniLM-L6-v2 weights (fp16 copy, to fit the transfer limit)
    runs/proof/bundle/     `zelo bench proof prepare` output (ids + texts, zstd Parquet)

    python -m benchmarks.gpu_train --out $OUT/gpu_train.json [--proof-scores $OUT/scores]

The query-tower recipe (issue #29; `zelo_ray/bench/query_tower_gpu.py`): prepare bundles here on
CPU from runs that `zelo bench rerank` (or `zelo demo`) made, then train on the GPU — NFCorpus alone,
then every collection pooled — at 512 tokens:
    python -m benchmarks.gpu_train --prepare-query-tower runs/bench-ablation   # here
    python -m benchmarks.gpu_train --out $OUT/qt.json --query-tower runs/gpu/qt

MFU = achieved model FLOP/s ÷ the chip's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s). Model
FLOPs per trained sample = 6 · N · T + 12 · layers · d · T² (matmul parameters N without the
embedding table, T tokens; the second term is attention scores and values, fwd + bwd).
"""

import argparse
import json
import time
from pathlib import Path

import torch


from zelo_ray.train.loop import StepRunner  # noqa: E402
from zelo_ray.scoring.models import Reranker, load_reranker  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def peak_flops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def matmul_params(model: torch.nn.Module) -> int:
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return sum(p.numel() for p in model.parameters()) - emb


def flops_per_sample(n: int, layers: int, d: int, t: int) -> float:
    return 6.0 * n * t + 12.0 * layers * d * t * t


class FixedTokens:
    """A batch of real (non-pad) random tokens of one length: clean throughput numbers."""

    def __init__(self, vocab: int, batch: int, length: int, device):
        g = torch.Generator().manual_seed(0)
        self.enc = {"input_ids": torch.randint(1000, vocab - 1, (batch, length), generator=g).to(device),
                    "attention_mask": torch.ones(batch, length, dtype=torch.long, device=device)}


def time_steps(scorer: Reranker, batch: int, length: int, steps: int, warmup: int) -> dict:
    dev = torch.device("cuda")
    runner = StepRunner(scorer, loss="mse", lr=1e-5, weight_decay=0.0, warmup_steps=1, total_steps=10**6,
                        max_length=length, precision="bf16", device=dev)
    toks = FixedTokens(scorer.tokenizer.vocab_size if scorer.kind == "cross_encoder" else
                       scorer.model.config.vocab_size, batch, length, dev)
    # bypass tokenisation: this measures the GPU step; tokenisation is measured separately below
    scorer.tokenize = lambda q, d, m: toks.enc
    rows = {"query": ["q"] * (batch // 8), "docs": [["d"] * 8] * (batch // 8),
            "targets": [[0.5] * 8] * (batch // 8), "elo": [[0.0] * 8] * (batch // 8)}
    scorer.train()
    for _ in range(warmup):
        runner.step(rows)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step(rows)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"batch": batch, "tokens": length, "steps": steps, "samples_per_s": round(batch * steps / dt, 1),
            "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def bench_model(name: str, scorer: Reranker, layers: int, d: int, configs, steps: int) -> dict:
    n = matmul_params(scorer.model)
    res = {"model": name, "params_total": sum(p.numel() for p in scorer.parameters()), "params_matmul": n,
           "runs": []}
    peak = peak_flops()
    for batch, length in configs:
        torch.cuda.reset_peak_memory_stats()
        try:
            r = time_steps(scorer, batch, length, steps, warmup=3)
        except torch.OutOfMemoryError:
            res["runs"].append({"batch": batch, "tokens": length, "error": "OOM"})
            torch.cuda.empty_cache()
            continue
        f = flops_per_sample(n, layers, d, length) * r["samples_per_s"]
        r["model_tflops"] = round(f / 1e12, 1)
        r["mfu"] = round(f / peak, 4) if peak else None
        res["runs"].append(r)
        print(name, r, flush=True)
    return res


def decoder_05b():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    # Qwen2.5-0.5B-like shape (24 layers, d=896, GQA 14/2 heads, 4864 MLP, 151k vocab, tied embeddings)
    cfg = LlamaConfig(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).to(torch.float32)
    tok = AutoTokenizer.from_pretrained(str(Path(__file__).resolve().parents[1] / "runs/gpu/model"))
    # random weights: any token id stands in for " yes" (throughput only; tokenisation is bypassed)
    return Reranker(model, tok, "decoder_yes", yes_id=9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/gpu/model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--proof-bundle", default="runs/proof/bundle")
    ap.add_argument("--proof-scores")
    ap.add_argument("--proof-epochs", type=float, default=2.0)
    ap.add_argument("--prepare-query-tower", metavar="WORKDIR",
                    help="(CPU) write query-tower bundles of every run under WORKDIR to runs/gpu/qt, then exit")
    ap.add_argument("--query-tower", metavar="BUNDLES", help="train the query tower on these bundles (GPU)")
    ap.add_argument("--qt-max-length", type=int, default=512)
    ap.add_argument("--qt-epochs", type=int, default=10)
    args = ap.parse_args()
    if args.prepare_query_tower:
        return prepare_query_tower(Path(args.prepare_query_tower))
    if args.query_tower:
        return query_tower(args)
    torch.backends.cuda.matmul.allow_tf32 = True
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "peak_bf16_flops": peak_flops()}
    mini = load_reranker(args.model, "cross_encoder").cuda()
    out["minilm"] = bench_model("all-MiniLM-L6-v2 cross-encoder", mini, 6, 384,
                                [(64, 256), (256, 256), (512, 256), (1024, 128)], args.steps)
    del mini
    torch.cuda.empty_cache()
    dec = decoder_05b().cuda()
    out["decoder_0.5b"] = bench_model("decoder ~0.5B (Qwen2.5-0.5B shape, yes-logit)", dec, 24, 896,
                                      [(16, 512), (32, 512), (64, 512)], max(5, args.steps // 2))
    del dec
    torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(out, indent=2))
    if args.proof_scores:
        from zelo_ray.bench.proof import train

        t0 = time.perf_counter()
        out["proof_training"] = train(args.proof_bundle, base=args.model, scores=args.proof_scores, device="cuda",
                                      epochs=args.proof_epochs, batch_size=32, max_length=256, lr=5e-5,
                                      precision="bf16", score_batch=512)
        out["proof_wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "proof_training"}, indent=1))


def prepare_query_tower(workdir: Path) -> None:
    from zelo_ray.bench.query_tower_gpu import prepare
    from zelo_ray.config import load_config

    names = sorted(d.name for d in workdir.iterdir() if (d / "train" / "examples-query-zelo.parquet").exists())
    prepare({n: load_config(None, [f"data.dataset={n}", f"data.workdir={workdir / n}"]) for n in names},
            Path("runs/gpu/qt"))


def query_tower(args) -> None:
    """NFCorpus alone, then every bundle pooled; each result is written as soon as it exists."""
    from zelo_ray.bench.query_tower_gpu import train

    bundles = sorted(p for p in Path(args.query_tower).iterdir() if (p / "rows.parquet").exists())
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    runs = {"nfcorpus": [b for b in bundles if b.name == "nfcorpus"], "pooled": bundles}
    for name, which in runs.items():
        if not which:
            continue
        t0 = time.perf_counter()
        out[name] = train(which, args.model, device="cuda", epochs=args.qt_epochs, max_length=args.qt_max_length)
        out[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(name, json.dumps({k: out[name][k] for k in ("wall_s", "best_epoch", "base", "trained")}), flush=True)


if __name__ == "__main__":
    main()
