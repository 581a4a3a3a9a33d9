"""Cost model: measured per-unit rates (docs/bench/*.json) → work, GPU-hours and wall time of a
zELO run at a given scale (default: the paper's 112k queries × 100 candidates).

Every rate is read from a benchmark JSON written by a command in docs/benchmarks.md; what is not
measured is an assumption and is labelled as one in the output.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["project", "teacher_share_cost"]


def _load(bench: Path, name: str) -> dict:
    return json.loads((bench / name).read_text())


def project(*, queries: int = 112_000, candidates: int = 100, k: int = 8, judges: int = 3, cross_per_query: float = 2.0,
            epochs: float = 2.0, corpus_docs: int | None = None, gpus: int = 32, callers: int = 16,
            endpoint_rpm: float = 10_000.0, tokens_per_call: int = 1_200, slm_model: str = "qwen3-0.6b",
            teacher_shares: tuple[float, ...] = (0.1, 0.25, 0.5), bench: str = "docs/bench") -> dict:
    """``teacher_shares``: shares of the pairs the hosted ensemble judges when the distilled SLM
    judges the rest (issue #20); each gets its calls, tokens, endpoint hours and SLM GPU-hours."""
    b = Path(bench)
    train = _load(b, "gpu_train_h200.json")
    pairs = queries * (k * candidates // 2 + cross_per_query)
    calls = pairs * judges
    samples = queries * candidates * epochs
    judge = _judge_stage(b, judges=judges, k=k, calls=calls, endpoint_rpm=endpoint_rpm, callers=callers,
                         tokens_per_call=tokens_per_call)
    slm = _slm_stage(b, slm_model, pairs)
    stages = [_embed_stage(b, corpus_docs or queries * candidates), judge, slm, *_train_stages(b, train, samples)]
    api_rate, slm_rate = judge["rate_per_s"], slm["rate_per_s"]  # unrounded
    _round(stages, gpus)
    hosted = stages[0]["gpu_hours"] + stages[3]["gpu_hours"] + stages[5]["gpu_hours"]
    slm_total = stages[0]["gpu_hours"] + stages[2]["gpu_hours"] + stages[5]["gpu_hours"]
    shares = [teacher_share_cost(share, pairs=pairs, judges=judges, api_rate=api_rate,
                                 tokens_per_call=tokens_per_call, slm_rate=slm_rate,
                                 base_gpu_hours=stages[0]["gpu_hours"] + stages[5]["gpu_hours"])
              for share in teacher_shares]
    return {"scale": {"queries": queries, "candidates": candidates, "k": k, "judges": judges, "pairs": pairs,
                      "judge_calls": calls, "training_samples": samples, "epochs": epochs, "gpus": gpus},
            "device": train["device"], "stages": stages,
            "total_gpu_hours": {"hosted_judges_4b_reranker": round(hosted, 1), "slm_judge_4b_reranker": round(slm_total, 1)},
            "teacher_shares": shares, "paper_h100_hours": "< 10,000"}


def _embed_stage(b: Path, docs: int) -> dict:
    emb_rate = _load(b, "gpu_dense_h200.json")["gpu_fp16_b512"]["docs_per_s"]
    return {"stage": "embed corpus (MiniLM, fp16, 256 tokens)", "units": docs, "unit": "documents",
            "rate_per_s": emb_rate, "rate_source": "gpu_dense_h200.json (H200)",
            "gpu_hours": docs / emb_rate / 3600}


def _judge_stage(b: Path, *, judges: int, k: int, calls: float, endpoint_rpm: float, callers: int,
                 tokens_per_call: int) -> dict:
    """Hosted judges: the slower of the endpoints' rate limits and the callers' measured CPU."""
    judging = _load(b, "judging_throughput.json")
    cpu_ms = min(r["driver_cpu_ms_per_call"] for r in judging["runs"] if "driver_cpu_ms_per_call" in r)
    per_caller = min(1000.0 / cpu_ms, 200.0)
    rate = min(judges * endpoint_rpm / 60.0, callers * per_caller)
    return {"stage": f"judge calls, {judges} hosted LLMs (k={k})", "units": calls, "unit": "calls",
            "rate_per_s": rate, "rate_source": f"min(endpoint limits {judges}×{endpoint_rpm:,.0f} RPM "
            f"[assumption], {callers} callers × {per_caller:.0f}/s [judging_throughput.json])",
            "gpu_hours": 0.0, "caller_cpu_hours": calls * cpu_ms / 1000 / 3600,
            "llm_tokens": calls * tokens_per_call, "wall_hours": calls / rate / 3600}


def _slm_stage(b: Path, slm_model: str, pairs: float) -> dict:
    slm_runs = [r for r in _load(b, "gpu_slm_h200.json")["runs"] if r["model"] == slm_model and "pairs_per_s" in r]
    if not slm_runs:
        raise ValueError(f"gpu_slm_h200.json has no measurement of {slm_model!r}")
    best = max(slm_runs, key=lambda r: r["pairs_per_s"])
    return {"stage": f"or: distilled pairwise SLM ({slm_model}, one judge)", "units": pairs, "unit": "pairs",
            "rate_per_s": best["pairs_per_s"], "rate_source": f"gpu_slm_h200.json: H200, transformers bf16 forward "
            f"(a floor for vLLM), batches of {best['max_batch_tokens']:,} tokens, Cranfield-length prompts",
            "gpu_hours": pairs / best["pairs_per_s"] / 3600}


def _train_stages(b: Path, train: dict, samples: float) -> list[dict]:
    """MiniLM, a 0.5B decoder and a 4B decoder (ZeRO) at their fastest measured settings."""
    mini = max(train["minilm"]["runs"], key=lambda r: r.get("samples_per_s", 0))
    d05 = max(train["decoder_0.5b"]["runs"], key=lambda r: r.get("samples_per_s", 0))
    ds = [r for r in _load(b, "gpu_deepspeed_h200.json")["runs"] if r["model"] == "qwen3-4b" and r.get("mode") == "full"
          and "samples_per_s" in r]
    big = max(ds, key=lambda r: r["samples_per_s"])
    return [
        {"stage": "train MiniLM cross-encoder", "units": samples, "unit": "samples",
         "rate_per_s": mini["samples_per_s"], "rate_source": f"gpu_train_h200.json, batch {mini['batch']} × "
         f"{mini['tokens']} tokens", "gpu_hours": samples / mini["samples_per_s"] / 3600},
        {"stage": "train 0.5B decoder reranker", "units": samples, "unit": "samples",
         "rate_per_s": d05["samples_per_s"], "rate_source": f"gpu_train_h200.json, batch {d05['batch']} × "
         f"{d05['tokens']} tokens, MFU {d05['mfu']}", "gpu_hours": samples / d05["samples_per_s"] / 3600},
        {"stage": "train 4B decoder reranker (zerank-1 size)", "units": samples, "unit": "samples",
         "rate_per_s": big["samples_per_s"],
         "rate_source": f"gpu_deepspeed_h200.json: Qwen3-4B shape, full fine-tuning, ZeRO-{big['zero_stage']}, "
         f"one GPU, batch {big['batch']} × {big['tokens']} tokens, MFU {big['mfu']}",
         "gpu_hours": samples / big["samples_per_s"] / 3600},
    ]


def _round(stages: list[dict], gpus: int) -> None:
    """Wall time of GPU stages spread over ``gpus``; numbers rounded for the table."""
    for s in stages:
        s.setdefault("wall_hours", s["gpu_hours"] / gpus if s["gpu_hours"] else 0.0)
        for key in ("gpu_hours", "wall_hours", "caller_cpu_hours", "rate_per_s"):
            if key in s:
                s[key] = round(s[key], 2)


def teacher_share_cost(share: float, *, pairs: float, judges: int, api_rate: float, tokens_per_call: int,
                       slm_rate: float, base_gpu_hours: float) -> dict:
    """The ensemble judges ``share`` of the pairs (``judges`` calls each), the SLM the rest."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"teacher share must be in [0, 1], got {share}")
    calls = share * pairs * judges
    slm_gpu = (1.0 - share) * pairs / slm_rate / 3600
    return {"teacher_share": share, "ensemble_calls": round(calls), "llm_tokens": round(calls * tokens_per_call),
            "endpoint_wall_hours": round(calls / api_rate / 3600, 2), "slm_pairs": round((1.0 - share) * pairs),
            "slm_gpu_hours": round(slm_gpu, 2), "total_gpu_hours_4b_reranker": round(base_gpu_hours + slm_gpu, 1),
            "calls_saved_vs_ensemble_only": round((1.0 - share) * pairs * judges)}
