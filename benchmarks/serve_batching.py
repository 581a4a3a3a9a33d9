"""Cross-request batching on CPU at the paper's request shapes, and where a replica's time goes.

    .venv/bin/python -m benchmarks.serve_batching --json docs/bench/serve_batching.json

**Requests**: each has 20–100 documents of 200–2,000 tokens (uniform; the paper's shapes), cut
from corpus text (Cranfield by default) at the model tokenizer's bytes per token. The model is
all-MiniLM-L6-v2 with a one-logit head (512 positions; speed does not depend on the weights);
`serve.max_tokens_per_doc` 512. Documents longer than a pair's budget are truncated here
(`--long-documents truncate`, default) so that a request costs what one forward pass per document
costs; `chunk_max` scores ~2.4× the tokens.

1. **Through Ray Serve over HTTP** (one replica, 2 CPUs, `--clients` concurrent clients, each
   request once per round): requests/s and tokens/s with `serve.batching` on vs off, the two
   modes alternated `--rounds` times in the same process (ratios, not seconds: the machine is
   shared).
2. **Profile, in-process** (the replica's code path, 2 threads): the share of a request's time in
   parsing, tokenising, building tensors and the forward pass, and inside the forward pass by
   operator (torch.profiler); the forward pass's tokens/s at 1–64 rows per call at 512 tokens
   (what merging requests could gain: nothing once a request fills a forward call by itself).
3. **What would move CPU throughput instead**: the same forward pass with int8 dynamic
   quantisation of the linear layers (torch.ao), its speed and how far its scores move; and on a
   finished run (`--run`), nDCG@10 of its trained model reranking the test queries' candidates in
   fp32 vs int8 (paired bootstrap CI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def realistic_requests(texts: list[str], n: int, docs: tuple[int, int], tokens: tuple[int, int],
                       bytes_per_token: float, seed: int = 0) -> list[dict]:
    from zelo_ray.bench.payloads import make_docs

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(docs[0], docs[1] + 1))
        sizes = rng.integers(tokens[0], tokens[1] + 1, k)
        body = [make_docs(texts, 1, int(t * bytes_per_token), seed=int(rng.integers(2**31)))[0] for t in sizes]
        query = " ".join(texts[int(rng.integers(len(texts)))].split()[:8])
        out.append({"model": "zelo-reranker", "query": query, "documents": body})
    return out


def through_serve(ckpt: str, bodies: list[dict], *, clients: int, rounds: int, threads: int,
                  long_documents: str, small_forward: int, log) -> dict:
    import ray
    from ray import serve

    from zelo_ray.bench.common import free_port
    from zelo_ray.bench.payloads import percentiles
    from zelo_ray.bench.serving import deploy, post_many

    port = free_port()
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    common = {"num_cpus": threads, "max_batch_tokens": 16384, "max_tokens_per_doc": 512,
              "max_ongoing_requests": 64, "long_documents": long_documents, "fusion": False}
    modes = {"on": {"batching": True}, "off": {"batching": False}}
    if small_forward:  # batching on, forward calls (and batches) bounded by fewer tokens
        modes["on_small"] = {"batching": True, "max_batch_tokens": small_forward}
    runs = {m: [] for m in modes}
    try:
        for r in range(rounds):
            for mode in list(modes) if r % 2 == 0 else list(modes)[::-1]:
                url = deploy(ckpt, port, **{**common, **modes[mode]})
                asyncio.run(post_many(url, bodies[:2], 2))                      # warm-up
                lat, codes, wall = asyncio.run(post_many(url, bodies, clients))
                runs[mode].append({"requests_per_s": round(len(bodies) / wall, 3), "wall_s": round(wall, 1),
                                   **percentiles(lat), "codes": {str(k): v for k, v in codes.items()}})
                log(f"round {r} batching {mode}: {runs[mode][-1]}")
    finally:
        serve.shutdown()
        ray.shutdown()
    def ratio(a: str) -> dict:
        x = [on["requests_per_s"] / off["requests_per_s"] for on, off in zip(runs[a], runs["off"])]
        return {"per_round": [round(v, 3) for v in x], "median": round(float(np.median(x)), 3)}

    out = {"clients": clients, "requests": len(bodies), "rounds": rounds, "max_batch_tokens": 16384,
           **{f"batching_{m}": v for m, v in runs.items()}, "speedup": ratio("on")}
    if small_forward:
        out["small_forward_tokens"] = small_forward
        out["speedup_small_forward"] = ratio("on_small")
    return out


def profile(engine, service, bodies: list[dict], log) -> dict:
    """Phase times of the service path for each request, then the forward pass by operator."""
    import torch

    from zelo_ray.serve.engine import plan_batches

    phases = {"parse": 0.0, "windows": 0.0, "tokenize": 0.0, "tensors": 0.0, "forward": 0.0, "rank": 0.0}
    n_tok = n_pad = 0
    for body in bodies:
        raw = json.dumps(body).encode()
        t = time.perf_counter()
        req, docs = service.parse("cohere", raw)
        phases["parse"] += time.perf_counter() - t
        t = time.perf_counter()
        if service._chunked("cohere", req, "start"):
            docs, _ = engine.windows(req.query, docs, max_doc_tokens=512, overlap=64, max_windows=64)
        phases["windows"] += time.perf_counter() - t
        t = time.perf_counter()
        pairs = engine.encode(req.query, docs, max_doc_tokens=512)
        phases["tokenize"] += time.perf_counter() - t
        scores = np.empty(len(pairs))
        with torch.inference_mode():
            for group in plan_batches([p.n_tokens for p in pairs], engine.max_batch_tokens, engine.max_batch_rows):
                rows = [pairs[i] for i in group]
                t = time.perf_counter()
                x = engine._tensors(rows)
                phases["tensors"] += time.perf_counter() - t
                t = time.perf_counter()
                scores[group] = torch.sigmoid(engine.model(x).float()).numpy()
                phases["forward"] += time.perf_counter() - t
                n_tok += sum(p.n_tokens for p in rows)
                n_pad += len(rows) * max(p.n_tokens for p in rows)
        t = time.perf_counter()
        order = np.argsort(-scores, kind="stable")
        json.dumps([{"index": int(i), "relevance_score": float(scores[i])} for i in order])
        phases["rank"] += time.perf_counter() - t
    total = sum(phases.values())
    out = {"requests": len(bodies), "seconds": round(total, 2), "tokens": n_tok,
           "padding_overhead": round(n_pad / n_tok - 1, 4),
           "share": {k: round(v / total, 4) for k, v in phases.items()}}
    log(f"profile: {out}")

    from torch.profiler import ProfilerActivity, profile as torch_profile

    pairs = engine.encode(bodies[0]["query"], bodies[0]["documents"], max_doc_tokens=512)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.score(pairs)
    ops = sorted(((e.key, e.self_cpu_time_total) for e in prof.key_averages()), key=lambda kv: -kv[1])
    cpu = sum(v for _, v in ops)
    out["forward_ops_self_cpu_share"] = {k: round(v / cpu, 4) for k, v in ops[:10]}
    log(f"forward by operator: {out['forward_ops_self_cpu_share']}")
    return out


def rows_curve(engine, texts: list[str], length: int = 512, rows: tuple = (1, 2, 4, 8, 16, 32, 64),
               seconds: float = 3.0) -> list[dict]:
    """Forward-pass tokens/s at ``rows`` pairs of ``length`` tokens per call."""
    import torch

    from zelo_ray.serve.engine import Pair

    ids = engine.tok(" ".join(texts[:400]), add_special_tokens=False, verbose=False)["input_ids"]
    out = []
    for r in rows:
        batch = [Pair(tuple(ids[i * 7:i * 7 + length]), (0,) * length) for i in range(r)]
        x = engine._tensors(batch)
        with torch.inference_mode():
            engine.model(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                engine.model(x)
                n += 1
        el = time.perf_counter() - t0
        out.append({"rows": r, "tokens_per_s": round(n * r * length / el), "ms_per_call": round(1000 * el / n, 1)})
    return out


def int8_engine(engine):
    """The same engine with int8 dynamic quantisation of its linear layers (CPU)."""
    import torch

    from zelo_ray.serve.engine import ScoringEngine

    q8 = torch.ao.quantization.quantize_dynamic(engine.model, {torch.nn.Linear}, dtype=torch.qint8)
    e8 = ScoringEngine(q8, device=engine.device, max_query_tokens=engine.max_query_tokens,
                       max_batch_tokens=engine.max_batch_tokens, max_batch_rows=engine.max_batch_rows)
    e8.max_length = engine.max_length
    return e8


def int8_check(engine, bodies: list[dict], log) -> dict:
    e8 = int8_engine(engine)
    times = {"fp32": 0.0, "int8": 0.0}
    diffs = []
    for k, body in enumerate(bodies):
        pairs = engine.encode(body["query"], body["documents"], max_doc_tokens=512)
        for name, e in (("fp32", engine), ("int8", e8)) if k % 2 == 0 else (("int8", e8), ("fp32", engine)):
            t = time.perf_counter()
            s = e.score(pairs)
            times[name] += time.perf_counter() - t
            if name == "fp32":
                ref = s
            else:
                got = s
        diffs.append(float(np.abs(ref - got).max()))
    # ranking quality is int8_quality's job: a fresh head's scores sit too close together to rank
    out = {"requests": len(bodies), "speedup": round(times["fp32"] / times["int8"], 3),
           "max_abs_score_diff": round(max(diffs), 4)}
    log(f"int8: {out}")
    return out


def int8_quality(run: Path, depth: int, log) -> dict:
    """nDCG@10 of the run's trained model alone reranking its hybrid candidates (test queries),
    fp32 vs int8 dynamic quantisation, with a paired bootstrap CI of the difference."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import evaluate_runs
    from zelo_ray.serve.engine import ScoringEngine
    from zelo_ray.data.texts import doc_texts

    col = open_collection(run / "data")
    test = json.loads((run / "report.json").read_text())["split"]["test"]
    qrels = col.qrels("test" if "test" in col.splits else col.splits[0])
    queries = dict(zip(col.queries()["query_id"].to_pylist(), col.queries()["text"].to_pylist()))
    cand = pq.read_table(run / "candidates.parquet", columns=["query_id", "doc_id", "rank"])
    cand = cand.filter(pc.less_equal(cand["rank"], depth)).sort_by([("query_id", "ascending"), ("rank", "ascending")])
    heads: dict[str, list[str]] = {}
    for q, d in zip(cand["query_id"].to_pylist(), cand["doc_id"].to_pylist()):
        heads.setdefault(q, []).append(d)
    test = sorted(q for q in test if q in heads and q in qrels)
    texts = doc_texts(col, sorted({d for q in test for d in heads[q]}))
    fp32 = ScoringEngine.load(str(run / "train" / "model"), device="cpu")
    q8 = int8_engine(fp32)
    runs, seconds = {}, {}
    for name, e in (("fp32", fp32), ("int8", q8)):
        t0 = time.perf_counter()
        runs[name] = {}
        for q in test:
            s = e.score(e.encode(queries[q], [texts[d] for d in heads[q]], max_doc_tokens=512))
            runs[name][q] = [heads[q][i] for i in np.argsort(-s, kind="stable")]
        seconds[name] = round(time.perf_counter() - t0, 1)
    quality = evaluate_runs(qrels, runs, test, n_boot=1000, confidence=0.95, seed=0, versus="fp32")
    out = {"run": str(run), "test_queries": len(test), "depth": depth, "max_length": fp32.max_length,
           "ndcg@10": {m: quality[m]["ndcg@10"] for m in runs},
           "int8_minus_fp32": quality["int8"].get("delta_vs_fp32", {}).get("ndcg@10"),
           "rerank_seconds": seconds, "speedup": round(seconds["fp32"] / seconds["int8"], 3)}
    log(f"int8 quality: {out}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cranfield")
    ap.add_argument("--checkpoint", help="model folder (default: all-MiniLM-L6-v2 + fresh head, 512 tokens)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=32, help="requests per round and mode")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long-documents", default="truncate", choices=["truncate", "chunk_max"])
    ap.add_argument("--small-forward", type=int, default=4096, help="also batching on with this "
                    "serve.max_batch_tokens (0: skip)")
    ap.add_argument("--profile-requests", type=int, default=6)
    ap.add_argument("--run", default="runs/cranfield", help="a finished run: int8 quality on its test queries")
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--parts", default="serve,profile,int8,int8-quality")
    ap.add_argument("--json")
    args = ap.parse_args()

    import torch

    from zelo_ray.bench.common import machine
    from zelo_ray.bench.serving import _texts
    from zelo_ray.config.serve import ServeConfig
    from zelo_ray.serve.engine import ScoringEngine
    from zelo_ray.serve.service import RerankService
    from zelo_ray.scoring.models import load_reranker, save_reranker

    def log(m):
        print(m, file=sys.stderr, flush=True)

    texts = _texts(args.dataset)
    ckpt = args.checkpoint
    if not ckpt:
        import tempfile

        ckpt = str(Path(tempfile.mkdtemp(prefix="zelo-bench-batching-")) / "model")
        save_reranker(load_reranker("default", "cross_encoder"), ckpt, {"note": "fresh head, benchmark only"})
    torch.set_num_threads(args.threads)
    engine = ScoringEngine.load(ckpt, device="cpu", max_batch_tokens=16384)
    sample = " ".join(texts[:300])
    bpt = len(sample.encode()) / len(engine.tok(sample, add_special_tokens=False, verbose=False)["input_ids"])
    bodies = realistic_requests(texts, args.requests, (20, 100), (200, 2000), bpt)
    n_docs = [len(b["documents"]) for b in bodies]
    out = {"machine": machine(), "checkpoint": args.checkpoint or "all-MiniLM-L6-v2 + fresh head",
           "threads": args.threads, "max_length": engine.max_length, "bytes_per_token": round(bpt, 2),
           "long_documents": args.long_documents,
           "request_shape": {"documents": "20-100", "tokens_per_document": "200-2000", "mean_documents":
                             round(float(np.mean(n_docs)), 1), "mean_kb": round(float(np.mean(
                                 [sum(len(d.encode()) for d in b["documents"]) for b in bodies])) / 1000, 1)}}
    parts = args.parts.split(",")
    if "profile" in parts:
        svc = RerankService(ServeConfig(checkpoint=ckpt, long_documents=args.long_documents),
                            encode=engine.encode, score=None, model_info={}, api_keys=[], windows=engine.windows)
        out["profile"] = profile(engine, svc, bodies[:args.profile_requests], log)
        out["forward_rows_curve_512"] = rows_curve(engine, texts)
        log(f"rows curve: {out['forward_rows_curve_512']}")
    if "int8" in parts:
        out["int8_dynamic"] = int8_check(engine, bodies[:args.profile_requests], log)
    if "int8-quality" in parts:
        out["int8_quality"] = int8_quality(Path(args.run), args.depth, log)
    if "serve" in parts:
        out["serve"] = through_serve(ckpt, bodies, clients=args.clients, rounds=args.rounds, threads=args.threads,
                                     long_documents=args.long_documents, small_forward=args.small_forward,
                                     log=log)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
