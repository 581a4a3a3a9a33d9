"""GPU throughput of the pairwise SLM judge (issue #20): how many pairs per second one GPU judges
with the distilled small model, the number the cost model's "SLM judges the bulk" line needs.

vLLM does not run on the GPU machine here (no Ray, no vLLM, no network), so this times the same
forward pass vLLM serves — one prefill of the pairwise prompt, the next-token logits of " A" and
" B" at the last real token (`zelo_ray.scoring.models.last_token_logits`, as `PairwiseLM` does) —
in bf16 with transformers, length-sorted batches right-padded. vLLM packs prompts without padding
and schedules continuously, so these rates are a floor for it, not a ceiling.

Shapes: SmolLM2-135M (the offline model), Qwen3-0.6B, -1.7B and -4B (the public configs), with
random weights: throughput only. Prompt lengths are drawn from real prompts
(``--lengths``: a JSON ``{"tokens": [...]}``; made from the Cranfield run's judged pairs with the
SmolLM2 tokenizer and `slm_prompt`, mean ≈ 455 tokens), so padding waste is what it would be.

    python -m benchmarks.gpu_slm_judge --lengths runs/gpu/slm_prompt_tokens.json --out $OUT/gpu_slm.json
    python -m benchmarks.gpu_slm_judge --dry --out /tmp/gpu_slm_dry.json   # CPU, tiny shapes (a test runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from zelo_ray.scoring.models import last_token_logits, pad_right  # noqa: E402

SHAPES = {  # (transformers class name, config): the public configs' dimensions
    "smollm2-135m": ("Llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, head_dim=64, vocab_size=49_152)),
    "qwen3-0.6b": ("Qwen3", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151_936)),
    "qwen3-1.7b": ("Qwen3", dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151_936)),
    "qwen3-4b": ("Qwen3", dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                               num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151_936)),
}
DRY_SHAPES = {"tiny": ("Llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, head_dim=16, vocab_size=512))}


def build(kind: str, shape: dict, device: torch.device, dtype: torch.dtype):
    import transformers

    cfg = getattr(transformers, f"{kind}Config")(**shape, max_position_embeddings=8192, tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = getattr(transformers, f"{kind}ForCausalLM")(cfg).to(dtype)
    return model.eval()


def batches(lengths: np.ndarray, max_tokens: int, max_rows: int) -> list[np.ndarray]:
    """Indices of length-sorted batches, each at most ``max_tokens`` padded tokens and ``max_rows`` rows."""
    order = np.argsort(lengths, kind="stable")
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1 > max_rows or (len(cur) + 1) * lengths[i] > max_tokens):
            out.append(np.array(cur))
            cur = []
        cur.append(i)
    if cur:
        out.append(np.array(cur))
    return out


@torch.no_grad()
def judge_all(model, ids: list[list[int]], groups, device) -> float:
    """Seconds to judge every prompt (the two answer logits per row), synchronised."""
    t0 = time.perf_counter()
    for g in groups:
        enc = {k: v.to(device, non_blocking=True) for k, v in pad_right([ids[i] for i in g], 0).items()}
        logits = last_token_logits(model, enc)
        _ = (logits[:, 1] - logits[:, 2]).float().cpu()  # " A" − " B": the judge's output, fetched per batch
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry", action="store_true", help="CPU, a tiny shape, few prompts: checks the script end to end")
    ap.add_argument("--lengths", help="JSON with 'tokens': prompt lengths to draw from (default: a normal around 455)")
    ap.add_argument("--pairs", type=int, default=8192)
    ap.add_argument("--max-tokens", type=int, nargs="+", default=[32_768, 131_072],
                    help="padded tokens per batch (each is one configuration)")
    ap.add_argument("--max-rows", type=int, default=512)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry
    device = torch.device("cuda" if cuda else "cpu")
    rng = np.random.default_rng(0)
    n = 64 if args.dry else args.pairs
    if args.lengths:
        pool = np.array(json.loads(Path(args.lengths).read_text())["tokens"])
        lengths = rng.choice(pool, size=n)
    else:
        lengths = np.clip(rng.normal(455, 140, size=n), 64, 2048).astype(int)
    if args.dry:
        lengths = np.minimum(lengths, 48)
    shapes = DRY_SHAPES if args.dry else {k: SHAPES[k] for k in args.shapes}
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu (dry run)", "torch": torch.__version__,
              "dry": args.dry, "pairs": n, "mean_prompt_tokens": round(float(lengths.mean()), 1),
              "lengths": args.lengths or "normal(455, 140)", "runs": []}
    for name, (kind, shape) in shapes.items():
        model = build(kind, shape, device, torch.bfloat16 if cuda else torch.float32)
        ids = [rng.integers(3, shape["vocab_size"], size=int(L)).tolist() for L in lengths]
        for max_tokens in ([2048] if args.dry else args.max_tokens):
            groups = batches(lengths, max_tokens, args.max_rows)
            try:
                judge_all(model, ids, groups[:2], device)  # warm-up (kernels, allocator)
                dt = judge_all(model, ids, groups, device)
            except Exception as e:  # an OOM at one batch size must not lose the other measurements
                r = {"model": name, "max_batch_tokens": max_tokens, "error": f"{type(e).__name__}: {e}"[:400]}
            else:
                padded = sum(len(g) * int(lengths[g].max()) for g in groups)
                r = {"model": name, "max_batch_tokens": max_tokens, "batches": len(groups),
                     "pairs_per_s": round(n / dt, 1), "prompt_tokens_per_s": round(float(lengths.sum()) / dt),
                     "padding_share": round(1 - float(lengths.sum()) / padded, 4), "wall_s": round(dt, 2),
                     "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
            result["runs"].append(r)
            print(json.dumps(r), flush=True)
            Path(args.out).write_text(json.dumps(result, indent=2))
        del model
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
