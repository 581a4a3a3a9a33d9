"""Long documents: scoring a document as its best window (`serve.long_documents: chunk_max`)
against truncation, on a long-document collection built from a short one; and request latency.

    .venv/bin/python -m benchmarks.long_documents --run runs/cranfield --json docs/bench/long_documents.json

**The collection** (built, since ../shared holds only short-document collections): every document
of the run's collection becomes a long one — its own text (the *host*) placed at a random
position among `--filler` documents of the same collection that no query's qrels mention, about
3,400 words in all by default. A long document inherits its host's qrels, so what makes it
relevant sits anywhere in it. The run's hybrid candidates of its *test* queries (the split in
`report.json`) are reranked (top `--depth`) by the run's trained model alone, once with each long
document cut to the token budget and once as its best window; nDCG@10 against the qrels, with
a paired bootstrap CI of the difference (same queries, same candidates, same model).

**Latency** (in-process: the replica's own service code, tokenise + windows + score, 2 threads):
p50/p90 of a 12 KB request (12 documents of 1 KB), a 150 KB request of 150 documents of 1 KB,
and a 150 KB request of 5 documents of 30 KB (windows), each with chunk-max and truncation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np


def _long_docs(col, rng, filler: int) -> dict[str, str]:
    import pyarrow.parquet as pq

    corpus = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"])
    ids = corpus["doc_id"].to_pylist()
    texts = [f"{t}. {x}" if t else x for t, x in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())]
    judged = {d for split in col.splits for q in col.qrels(split).values() for d in q}
    pool = [t for d, t in zip(ids, texts) if d not in judged]
    out = {}
    for d, host in zip(ids, texts):
        parts = [pool[i] for i in rng.choice(len(pool), filler, replace=False)]
        parts.insert(int(rng.integers(0, filler + 1)), host)
        out[d] = "\n\n".join(parts)
    return out


def _rank(service, query: str, ids: list[str], docs: dict[str, str]) -> list[str]:
    body = json.dumps({"query": query, "texts": [docs[d] for d in ids]}).encode()
    status, payload = asyncio.run(service.rerank("tei", body, None))
    assert status == 200, payload
    return [ids[r["index"]] for r in payload]


def _service(engine, long_documents: str):
    from zelo_ray.config.serve import ServeConfig
    from zelo_ray.serve.service import RerankService

    cfg = ServeConfig(checkpoint="x", long_documents=long_documents, fusion=False, max_request_bytes=64 * 2**20)

    async def score(pairs):
        return engine.score(pairs)
    return RerankService(cfg, encode=engine.encode, score=score, model_info=engine.info(), api_keys=[],
                         windows=engine.windows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/cranfield")
    p.add_argument("--filler", type=int, default=24, help="other documents around each host")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--queries", type=int, default=60, help="test queries reranked (the first N by id)")
    p.add_argument("--latency-runs", type=int, default=7)
    p.add_argument("--json")
    a = p.parse_args(argv)

    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch

    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import evaluate_runs
    from zelo_ray.serve.engine import ScoringEngine

    torch.set_num_threads(2)
    run = Path(a.run)
    col = open_collection(run / "data")
    report = json.loads((run / "report.json").read_text())
    test = report["split"]["test"]
    qrels = col.qrels("test" if "test" in col.splits else col.splits[0])
    rng = np.random.default_rng(0)
    docs = _long_docs(col, rng, a.filler)
    words = np.array([len(t.split()) for t in docs.values()])
    engine = ScoringEngine.load(str(run / "train" / "model"), device="cpu")
    queries = dict(zip(col.queries()["query_id"].to_pylist(), col.queries()["text"].to_pylist()))
    cand = pq.read_table(run / "candidates.parquet", columns=["query_id", "doc_id", "rank"])
    cand = cand.filter(pc.less_equal(cand["rank"], a.depth)).sort_by([("query_id", "ascending"), ("rank", "ascending")])
    heads: dict[str, list[str]] = {}
    for q, d in zip(cand["query_id"].to_pylist(), cand["doc_id"].to_pylist()):
        heads.setdefault(q, []).append(d)
    test = sorted(q for q in test if q in heads and q in qrels)[:a.queries]
    runs, seconds = {}, {}
    for mode in ("truncate", "chunk_max"):
        svc = _service(engine, mode)
        t0 = time.perf_counter()
        runs[mode] = {q: _rank(svc, queries[q], heads[q], docs) for q in test}
        seconds[mode] = round(time.perf_counter() - t0, 1)
        print(f"{mode}: {len(test)} queries reranked in {seconds[mode]} s", file=sys.stderr)
    quality = evaluate_runs(qrels, runs, test, n_boot=1000, confidence=0.95, seed=0, versus="truncate")

    latency = {}
    one_kb = [t[:1000] for t in list(docs.values())[:150]]
    thirty_kb = [t[:30_000] for t in list(docs.values())[:5]]
    for name, texts in (("12KB_12x1KB", one_kb[:12]), ("150KB_150x1KB", one_kb), ("150KB_5x30KB", thirty_kb)):
        for mode in ("truncate", "chunk_max"):
            svc = _service(engine, mode)
            body = json.dumps({"query": "what limits the lift of a wing at high speed", "texts": texts}).encode()
            times = []
            for i in range(a.latency_runs + 1):
                t0 = time.perf_counter()
                status, payload = asyncio.run(svc.rerank("tei", body, None))
                assert status == 200, payload
                if i:  # the first call warms up
                    times.append(time.perf_counter() - t0)
            latency[f"{name}/{mode}"] = {"bytes": len(body), "p50_s": round(float(np.percentile(times, 50)), 3),
                                         "p90_s": round(float(np.percentile(times, 90)), 3)}
            print(name, mode, latency[f"{name}/{mode}"], file=sys.stderr)
    out = {"benchmark": "long_documents", "run": str(run), "filler_docs": a.filler,
           "words_per_long_doc": {"mean": round(float(words.mean())), "p10": int(np.percentile(words, 10)),
                                  "p90": int(np.percentile(words, 90))},
           "test_queries": len(test), "depth": a.depth, "model": str(run / "train" / "model"),
           "max_tokens_per_doc": 512, "rerank_seconds": seconds,
           "ndcg@10": {m: quality[m]["ndcg@10"] for m in runs},
           "chunk_max_minus_truncate": quality["chunk_max"].get("delta_vs_truncate", {}).get("ndcg@10"),
           "latency": latency, "threads": 2}
    from zelo_ray.bench.commands import write_result

    write_result(out, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
