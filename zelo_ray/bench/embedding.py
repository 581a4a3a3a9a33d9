"""`zelo bench embed`: dense indexing per backend against in-process sentence-transformers (#32).

Per round, on the same documents (title and text as the indexer joins them), token budget and
threads: sentence-transformers ``encode`` in this process (the floor), then for each backend the
embedder alone in this process ("engine") and the whole `zelo index` dense build (a Ray Data
actor pool appending to LanceDB, from a fresh table) — so the pipeline's overhead over its engine
and the engine's speed over sentence-transformers are both visible. Then each backend's index
answers the collection's judged queries (exact search, queries embedded by the same backend):
nDCG@10 with a paired bootstrap CI of its difference from torch's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from zelo_ray.bench.common import machine

__all__ = ["run"]


def run(*, dataset: str = "cranfield", backends: tuple[str, ...] = ("torch", "onnx", "onnx-int8"),
        rounds: int = 1, threads: int = 2, log=print) -> dict:
    import pyarrow.parquet as pq
    import ray

    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.layout import layout_at
    from zelo_ray.raysession import ensure_ray

    root = Path(tempfile.mkdtemp(prefix="zelo-bench-embed-"))
    col = prepare(dataset, layout_at(root / "base").data)
    t = pq.read_table(col.corpus_path, columns=["title", "text"])
    texts = [f"{a}\n{b}" if a else b for a, b in zip(t["title"].to_pylist(), t["text"].to_pylist())]
    cfg = load_config(None, [f"data.dataset={dataset}", f"data.workdir={root / 'base'}"])
    ensure_ray(cfg.ray)
    out = {"machine": machine(), "dataset": dataset, "docs": len(texts), "threads": threads,
           "max_seq_length": "the model's (256)", "rounds": []}
    try:
        for r in range(rounds):
            out["rounds"].append(_round(col, texts, dataset, root, backends, threads, log))
        out["quality"] = _quality(col, root, backends, threads)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    out["summary"] = _summary(out["rounds"], backends)
    return out


def _timed_encode(backend: str, texts: list[str], threads: int) -> float:
    from zelo_ray.retrieval.embedder import Embedder

    emb = Embedder(backend=backend, threads=threads)
    emb.encode(texts[:8])
    t = time.perf_counter()
    emb.encode(texts)
    return round(len(texts) / (time.perf_counter() - t), 1)


def _round(col, texts, dataset, root: Path, backends, threads: int, log) -> dict:
    from zelo_ray.config import load_config
    from zelo_ray.retrieval.indexing import build_dense

    row = {"sentence_transformers": _timed_encode("torch", texts, threads)}
    log(f"sentence-transformers encode: {row['sentence_transformers']} docs/s")
    for b in backends:
        row[f"engine:{b}"] = _timed_encode(b, texts, threads)
        uri = root / f"dense-{b}"
        shutil.rmtree(uri, ignore_errors=True)
        cfg = load_config(None, [f"data.dataset={dataset}", f"data.workdir={root / 'base'}", f"index.backend={b}"])
        res = build_dense(col, str(uri), cfg, progress=False)
        row[f"index:{b}"] = res["docs_per_s"]
        log(f"{b}: engine {row[f'engine:{b}']} docs/s, zelo index {row[f'index:{b}']} docs/s")
    return row


def _quality(col, root: Path, backends, threads: int) -> dict:
    from zelo_ray.eval.metrics import bootstrap_ci, judged_queries, per_query_metrics
    from zelo_ray.retrieval.dense import DenseSearcher
    from zelo_ray.retrieval.embedder import Embedder

    split = "test" if "test" in col.splits else col.splits[0]
    qrels = col.qrels(split)
    qids = judged_queries(qrels)
    q = col.queries()
    text = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))
    ids = np.asarray(col.doc_ids().to_pylist())
    ndcg = {}
    for b in backends:
        vecs = Embedder(backend=b, threads=threads).encode([text[x] for x in qids])
        hits = DenseSearcher(str(root / f"dense-{b}"), mode="exact").search(vecs, 100)
        run = {x: list(ids[rows]) for x, (rows, _) in zip(qids, hits)}
        per_query = per_query_metrics(qrels, run, qids)["ndcg@10"]
        ndcg[b] = np.array([per_query[x] for x in qids])
    out = {"split": split, "queries": len(qids), "ndcg@10": {b: round(float(v.mean()), 4) for b, v in ndcg.items()}}
    if "torch" in ndcg:
        for b in backends:
            if b != "torch":
                lo, hi = bootstrap_ci(ndcg[b] - ndcg["torch"])[0]
                out[f"{b} - torch"] = {"delta": round(float((ndcg[b] - ndcg["torch"]).mean()), 4),
                                       "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return out


def _summary(rounds: list[dict], backends) -> dict:
    mean = {k: round(float(np.mean([r[k] for r in rounds])), 1) for k in rounds[0]}
    st = mean["sentence_transformers"]
    return {"mean_docs_per_s": mean,
            "index_over_st": {b: round(mean[f"index:{b}"] / st, 2) for b in backends},
            "engine_over_st": {b: round(mean[f"engine:{b}"] / st, 2) for b in backends}}
