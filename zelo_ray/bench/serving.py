"""Serving benchmarks (``zelo bench serve``), each against its baseline in the same run:

1. latency p50/p90/p99 of a rerank call over HTTP through Ray Serve with 12 KB and 150 KB of
   documents, and the same call made directly in-process (``ScoringEngine``) → Serve overhead;
2. throughput under ``clients`` concurrent clients with ``@serve.batch`` on vs off;
3. a load test: ``load_requests`` requests of mixed sizes from concurrent clients, counting
   every status code (target: 0 server errors).

Corpus text comes from a collection (default cranfield); the model is a MiniLM cross-encoder
(the demo's trained checkpoint when present, else the base with a fresh head: speed does not
depend on the weights).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from zelo_ray.bench.common import free_port, machine
from zelo_ray.bench.payloads import make_docs, payload, percentiles
from zelo_ray.layout import layout_at

__all__ = ["bench_checkpoint", "corpus_texts", "deploy", "post_many", "run"]


def corpus_texts(dataset: str, n: int = 5000) -> list[str]:
    import pyarrow.parquet as pq

    from zelo_ray.data import prepare

    col = prepare(dataset, layout_at(Path("runs/bench-serve") / Path(dataset).name).data)
    t = pq.read_table(col.corpus_path, columns=["text"]).slice(0, n)
    return [s for s in t["text"].to_pylist() if s]


def bench_checkpoint(path: str | None) -> tuple[str, str]:
    if path:
        return path, path
    demo = Path("runs/cranfield/train/model")
    if (demo / "config.json").exists():
        return str(demo), "demo checkpoint (MiniLM cross-encoder)"
    from zelo_ray.scoring.models import load_reranker, save_reranker

    out = Path(tempfile.mkdtemp(prefix="zelo-bench-serve-")) / "model"
    save_reranker(load_reranker("default", "cross_encoder"), out, {"note": "fresh head, benchmark only"})
    return str(out), "all-MiniLM-L6-v2 + fresh head (speed only)"


async def post_many(url: str, bodies: list[dict], clients: int) -> tuple[list[float], dict[int, int], float]:
    import aiohttp

    lat, codes, queue = [], {}, list(reversed(bodies))
    t0 = time.perf_counter()

    async def worker(session):
        while queue:
            body = queue.pop()
            t = time.perf_counter()
            try:
                async with session.post(url, json=body) as r:
                    await r.read()
                    code = r.status
            except aiohttp.ClientError:
                code = -1  # connection-level failure: counted, never hidden
            lat.append(time.perf_counter() - t)
            codes[code] = codes.get(code, 0) + 1

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as s:
        await asyncio.gather(*(worker(s) for _ in range(clients)))
    return lat, codes, time.perf_counter() - t0


def deploy(checkpoint: str, port: int, **settings) -> str:
    """Deploy (or redeploy) the reranker app with ``settings`` on the running Serve instance;
    returns its Cohere v2 URL once the app is ready."""
    from ray import serve

    from zelo_ray.serve.app import build_app

    serve.run(build_app({"checkpoint": checkpoint, **settings}), name="bench", route_prefix="/", blocking=False)
    return f"http://127.0.0.1:{port}/v2/rerank"


def run(*, dataset: str = "cranfield", checkpoint: str | None = None, calls_12kb: int = 30, calls_150kb: int = 8,
        clients: int = 16, throughput_requests: int = 320, docs_per_request: int = 4, doc_bytes: int = 300,
        load_requests: int = 1000, threads: int = 2, parts: tuple[str, ...] = ("latency", "throughput", "load"),
        log=print) -> dict:
    import urllib.request

    import ray
    import torch
    from ray import serve

    from zelo_ray.serve.engine import ScoringEngine

    texts = corpus_texts(dataset)
    ckpt, ckpt_label = bench_checkpoint(checkpoint)
    out = {"machine": machine(), "checkpoint": ckpt_label, "threads": threads, "payload": "1 KB documents"}
    # baseline: the replica's code path, in this process, same threads
    torch.set_num_threads(threads)
    engine = ScoringEngine.load(ckpt, device="cpu", max_batch_tokens=16384)

    port = free_port()
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    common = {"num_cpus": threads, "max_batch_tokens": 16384, "max_tokens_per_doc": _BUDGET, "max_ongoing_requests": 64}
    try:
        url = deploy(ckpt, port, batching=True, **common)
        with urllib.request.urlopen(url.replace("/v2/rerank", "/healthz")) as r:
            out["replica"] = json.loads(r.read())
        if "latency" in parts:
            out["latency"] = _latency(url, engine, texts, {12: calls_12kb, 150: calls_150kb}, log)
        if "throughput" in parts:
            small = [{"model": "zelo-reranker", "query": " ".join(texts[i].split()[:6]),
                      "documents": make_docs(texts, docs_per_request, doc_bytes, seed=i)}
                     for i in range(throughput_requests)]
            out["throughput"] = {"clients": clients, "requests": throughput_requests,
                                 "docs_per_request": docs_per_request, "doc_bytes": doc_bytes,
                                 **_throughput(url, ckpt, port, common, small, clients, log)}
        if "load" in parts:
            url = deploy(ckpt, port, batching=True, **{**common, "max_tokens_per_doc": 128})
            out["load_test"] = _load_test(url, texts, load_requests, clients)
            log(f"load test: {out['load_test']}")
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


_BUDGET = 512  # document tokens of the latency and throughput requests


def _latency(url: str, engine, texts: list[str], calls: dict[int, int], log) -> list[dict]:
    """Per payload size: Serve's latency vs the replica's code path in this process."""
    lat, direct = {}, {}
    for kb, n in calls.items():
        q, docs = payload(texts, kb)
        body = {"model": "zelo-reranker", "query": q, "documents": docs}
        asyncio.run(post_many(url, [body], 1))                        # warm-up both paths
        engine.score(engine.encode(q, docs, max_doc_tokens=_BUDGET))
        served, local, codes = [], [], {}
        # interleaved, one call at a time: both paths see the same (shared, noisy) machine
        for _ in range(n):
            t = time.perf_counter()
            engine.score(engine.encode(q, docs, max_doc_tokens=_BUDGET))
            local.append(time.perf_counter() - t)
            ts, c, _ = asyncio.run(post_many(url, [body], 1))
            served += ts
            for k, v in c.items():
                codes[k] = codes.get(k, 0) + v
        direct[kb] = percentiles(local)
        lat[kb] = {**percentiles(served), "codes": codes,
                   "overhead_p50": round(percentiles(served)["p50_ms"] / direct[kb]["p50_ms"] - 1, 4)}
        log(f"{kb} KB: Serve {lat[kb]}; in-process {direct[kb]}")
    return [{"payload_kb": kb, "documents": len(payload(texts, kb)[1]), "serve": lat[kb],
             "in_process": direct[kb]} for kb in calls]


def _throughput(url: str, ckpt, port: int, common: dict, small: list[dict], clients: int, log) -> dict:
    """Requests/s of many small requests with the replica's batching on, then off."""
    thr = {}
    for mode in ("on", "off"):
        if mode == "off":
            url = deploy(ckpt, port, batching=False, **common)
        asyncio.run(post_many(url, small[:clients], clients))          # warm-up
        ts, codes, wall = asyncio.run(post_many(url, small, clients))
        thr[mode] = {"requests_per_s": round(len(small) / wall, 2), **percentiles(ts), "codes": codes}
        log(f"throughput batching {mode}: {thr[mode]}")
    return {"batching_on": thr["on"], "batching_off": thr["off"],
            "speedup": round(thr["on"]["requests_per_s"] / thr["off"]["requests_per_s"], 3)}


def _load_test(url: str, texts: list[str], load_requests: int, clients: int) -> dict:
    """Mixed requests (1–20 documents of 50–800 bytes, a third with top_n) from ``clients``."""
    rng = np.random.default_rng(7)
    bodies = [{"model": "zelo-reranker", "query": " ".join(texts[int(rng.integers(len(texts)))].split()[:8]),
               "documents": make_docs(texts, int(rng.integers(1, 21)), int(rng.integers(50, 800)), seed=i),
               **({"top_n": int(rng.integers(1, 5))} if i % 3 == 0 else {})} for i in range(load_requests)]
    ts, codes, wall = asyncio.run(post_many(url, bodies, clients))
    errors = sum(v for k, v in codes.items() if k >= 500 or k < 0)
    return {"requests": load_requests, "clients": clients, "codes": {str(k): v for k, v in codes.items()},
            "server_errors": errors, "wall_s": round(wall, 1),
            "requests_per_s": round(load_requests / wall, 2), **percentiles(ts)}


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
