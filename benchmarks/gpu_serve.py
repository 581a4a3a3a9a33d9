"""GPU check of serving (issue #6), on the Ray-less GPU machine: the replica's scoring path
(`ScoringEngine`: tokenise with the per-document budget, length-sorted batches bounded by tokens,
bf16) timed in-process for the paper's latency table — 12 KB and 150 KB of documents per call,
p50/p90/p99 — for all-MiniLM-L6-v2 and a ~0.5B decoder (Qwen2.5-0.5B shape, random weights,
"yes"-logit, zerank-style); long documents scored as their best window (`serve.long_documents:
chunk_max`, issue #17: windows + tokenise + score, p50/p90/p99) at 12 KB and 150 KB made of long
documents; and what cross-request batching buys on a GPU: 16 and 64 clients' small requests
scored one by one vs merged into one call (what `@serve.batch` does in the replica).

    python -m benchmarks.gpu_serve --out $OUT/gpu_serve.json
    python -m benchmarks.gpu_serve --dry --out /tmp/gpu_serve_dry.json   # CPU, tiny shapes (a test runs it)
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


ROOT = Path(__file__).resolve().parents[1]

from zelo_ray.bench.payloads import payload, percentiles  # noqa: E402
from zelo_ray.serve.engine import ScoringEngine  # noqa: E402
from zelo_ray.scoring.models import Reranker, load_reranker  # noqa: E402


def timed(engine: ScoringEngine, query: str, docs: list[str], budget: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    pairs = engine.encode(query, docs, max_doc_tokens=budget)
    t1 = time.perf_counter()
    engine.score(pairs)
    sync()
    return time.perf_counter() - t0, t1 - t0


def latency(engine, texts, kb: int, budget: int, calls: int) -> dict:
    q, docs = payload(texts, kb)
    for _ in range(3):
        timed(engine, q, docs, budget)
    total, tok = zip(*(timed(engine, q, docs, budget) for _ in range(calls)))
    n_tok = sum(p.n_tokens for p in engine.encode(q, docs, max_doc_tokens=budget))
    return {"payload_kb": kb, "documents": len(docs), "tokens": n_tok, "max_tokens_per_doc": budget,
            **percentiles(list(total)), "tokenize_p50_ms": percentiles(list(tok))["p50_ms"]}


def long_latency(engine, texts, kb: int, doc_kb: int, budget: int, calls: int) -> dict:
    """A request of ``kb`` KB in documents of ``doc_kb`` KB, each scored as its best window."""
    q, docs = payload(texts, kb, doc_bytes=doc_kb * 1000)

    def once() -> float:
        t0 = time.perf_counter()
        windows, owner = engine.windows(q, docs, max_doc_tokens=budget, overlap=64, max_windows=64)
        scores = engine.score(engine.encode(q, windows, max_doc_tokens=budget))
        best = np.full(len(docs), -np.inf)
        np.maximum.at(best, owner, scores)
        sync()
        return time.perf_counter() - t0

    for _ in range(2):
        once()
    total = [once() for _ in range(calls)]
    windows, _ = engine.windows(q, docs, max_doc_tokens=budget, overlap=64, max_windows=64)
    n_tok = sum(p.n_tokens for p in engine.encode(q, windows, max_doc_tokens=budget))
    return {"payload_kb": kb, "documents": len(docs), "document_kb": doc_kb, "windows": len(windows),
            "tokens": n_tok, "max_tokens_per_doc": budget, **percentiles(total)}


def long_documents(engine, texts, calls: int) -> list[dict]:
    return [long_latency(engine, texts, kb, doc_kb, 512, calls) for kb, doc_kb in ((12, 12), (150, 30))]


def batching(engine, texts, clients: int = 16, docs_per_request: int = 8, rounds: int = 20) -> dict:
    reqs = [payload(texts, docs_per_request, seed=s) for s in range(clients)]
    enc = [engine.encode(q, d, max_doc_tokens=256) for q, d in reqs]
    for _ in range(2):
        engine.score([p for e in enc for p in e])
    sync()
    t0 = time.perf_counter()
    for _ in range(rounds):
        for e in enc:
            engine.score(e)
    sync()
    one_by_one = clients * rounds / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(rounds):
        engine.score([p for e in enc for p in e])
    sync()
    merged = clients * rounds / (time.perf_counter() - t0)
    return {"clients": clients, "docs_per_request": docs_per_request, "requests_per_s_unbatched": round(one_by_one, 1),
            "requests_per_s_batched": round(merged, 1), "speedup": round(merged / one_by_one, 2)}


def decoder_05b(tok_path: str) -> Reranker:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(tok_path)
    return Reranker(LlamaForCausalLM(cfg).to(torch.bfloat16), tok, "decoder_yes", yes_id=9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/gpu/model")
    ap.add_argument("--texts", default="runs/gpu/texts.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script on the build machine")
    ap.add_argument("--skip-decoder", action="store_true")
    ap.add_argument("--dry", action="store_true", help="CPU, a tiny model and a few calls: checks the "
                    "script end to end without a GPU")
    args = ap.parse_args()
    if args.dry:
        import tempfile

        from zelo_ray.scoring.models import save_reranker, tiny_decoder, tiny_encoder

        tmp = Path(tempfile.mkdtemp(prefix="gpu-serve-dry-"))
        args.model = str(tmp / "model")
        save_reranker(load_reranker(tiny_encoder(tmp / "base")), args.model, {"note": "dry run"})
        args.decoder_base = tiny_decoder(tmp / "dec")
        args.device, args.calls = "cpu", 2
        texts = [f"document {i} about lift and drag on a wing at angle {i % 17}" for i in range(200)]
    else:
        texts = json.loads(Path(args.texts).read_text())
    dev = torch.device(args.device)
    dtype = torch.float32 if args.dry else torch.bfloat16
    rounds = 2 if args.dry else 20
    out = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__,
           "payload": "1 KB documents; long_documents: 12 KB as 1 x 12 KB, 150 KB as 5 x 30 KB, best window",
           "dry_run": args.dry}
    mini = ScoringEngine(load_reranker(args.model, "cross_encoder", dtype=dtype).to(dev),
                         device=dev, max_batch_tokens=65536, max_batch_rows=512)
    _measure(out, "minilm", mini, texts, args, rounds)
    del mini
    if args.skip_decoder:
        return
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    model = load_reranker(args.decoder_base, "decoder_yes") if args.dry else decoder_05b(args.model)
    dec = ScoringEngine(model.to(dev), device=dev, max_batch_tokens=65536, max_batch_rows=256)
    if not args.dry:  # the tiny test decoder has fewer positions
        dec.max_length = 1024
    _measure(out, "decoder_0.5b", dec, texts, args, rounds)


def _measure(out: dict, name: str, engine, texts, args, rounds: int) -> None:
    """Latency at 12/150 KB, long documents and batching at 16/64 clients; written as it goes."""
    out[name] = {"latency": [latency(engine, texts, kb, 512, args.calls) for kb in (12, 150)],
                 "long_documents": long_documents(engine, texts, args.calls),
                 "batching": batching(engine, texts, 16, rounds=rounds),
                 "batching_64": batching(engine, texts, 64, rounds=max(1, rounds // 4))}
    print(json.dumps(out[name], indent=1), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
