"""Retrieval benchmarks: quality on the shared collections and throughput at 100k documents.

``quality``: index → retrieve → evaluate on each collection (BM25, dense, hybrid).

``run`` (throughput): a synthetic corpus of ``n_docs`` documents is built from the shared
collections' texts (each document = the first half of one real document + the second half of
another, so vocabulary and lengths are real). Measured, each phase in a fresh process for its
peak memory: BM25 indexing docs/s; dense indexing docs/s through the Ray Data actor pool on
``embed_sample`` real documents (the model's cost does not depend on corpus size) and raw
in-process encode docs/s; query-embedding queries/s; search queries/s for BM25-only,
dense-only (exact, and LanceDB IVF-PQ) and hybrid (both + RRF + candidate rows), query vectors
precomputed. Embedding 100k documents with MiniLM on 2 CPU cores would take hours, so the
100k vectors are stand-ins: each is the normalised sum of the real embeddings of its two
source documents' pool entries plus noise. Exact search cost does not depend on the values;
the ANN figures do a little, so read them as indicative.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from zelo_ray.bench.common import machine, peak_rss_mb, peak_rss_of
from zelo_ray.layout import layout, layout_at

__all__ = ["quality", "run", "synth_collection"]

SHARED = ("cranfield", "cisi", "med", "cacm", "vaswani")


def quality(datasets: list[str], *, workdir: str = "runs/bench-quality/{dataset}",
            overrides: list[str] | None = None) -> dict:
    from zelo_ray.config import load_config
    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import evaluate_with_config
    from zelo_ray.retrieval.indexing import run_index
    from zelo_ray.retrieval.pipeline import run_retrieve

    results = {}
    for name in datasets:
        cfg = load_config(None, [*(overrides or []), f"data.dataset={name}", f"data.workdir={workdir}"])
        idx = run_index(cfg)
        ret = run_retrieve(cfg)
        col = open_collection(layout(cfg).data)
        m = evaluate_with_config(col, cfg.data.split, ret["candidates"], cfg.evaluate)
        results[name] = {s: m[s] for s in ("bm25", "dense", "hybrid")} | {
            "judged_queries": m["meta"]["judged_queries"], "docs": idx["docs"]}
    wins = sum(r["hybrid"]["ndcg@10"]["mean"] >= max(r["bm25"]["ndcg@10"]["mean"], r["dense"]["ndcg@10"]["mean"])
               for r in results.values())
    return {"machine": machine(), "results": results,
            "hybrid_at_least_best_single_ndcg10": f"{wins}/{len(results)}"}


def _source_docs() -> list[tuple[str, str]]:
    from zelo_ray.data.collection import resolve_source
    from zelo_ray.data.beir import corpus_path, read_jsonl_records

    docs = []
    for name in SHARED:
        src = resolve_source(name)
        for _w, _id, title, text in read_jsonl_records(corpus_path(Path(src.location)), kind="corpus"):
            if (title + text).strip():
                docs.append((title, text))
    return docs


def _source_queries() -> list[str]:
    from zelo_ray.data.collection import resolve_source
    from zelo_ray.data.beir import read_jsonl_records

    out = []
    for name in SHARED:
        src = resolve_source(name)
        out += [t for _w, _i, _t, t in read_jsonl_records(Path(src.location) / "queries.jsonl", kind="q") if t.strip()]
    return out


def synth_collection(folder: Path, n_docs: int, n_queries: int, seed: int = 0,
                     docs: list[tuple[str, str]] | None = None) -> np.ndarray:
    """Write a BEIR folder of ``n_docs`` synthetic documents; returns (n_docs, 2) source indexes."""
    rng = np.random.default_rng(seed)
    docs = docs if docs is not None else _source_docs()
    queries = _source_queries()
    folder.mkdir(parents=True, exist_ok=True)
    src = rng.integers(0, len(docs), size=(n_docs, 2))
    with open(folder / "corpus.jsonl", "w") as fh:
        for i, (a, b) in enumerate(src):
            wa, wb = docs[a][1].split(), docs[b][1].split()
            text = " ".join(wa[: len(wa) // 2 + 1] + wb[len(wb) // 2:])
            fh.write(json.dumps({"_id": f"s{i}", "title": docs[a][0], "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for i in range(n_queries):
            fh.write(json.dumps({"_id": f"q{i}", "text": queries[i % len(queries)]}) + "\n")
    return src


def _phase_bm25(corpus: str, path: str) -> dict:
    from zelo_ray.retrieval.bm25 import build_bm25

    shutil.rmtree(path, ignore_errors=True)
    t = time.perf_counter()
    info = build_bm25(corpus, path)
    s = time.perf_counter() - t
    return {"docs": info["docs"], "seconds": round(s, 2), "docs_per_s": round(info["docs"] / s),
            "peak_rss_mb": round(peak_rss_mb())}


def _phase_embed(pool_texts: list[str], query_texts: list[str]) -> dict:
    from zelo_ray.retrieval.embedder import Embedder

    emb = Embedder(threads=os.cpu_count() or 1)
    emb.encode(pool_texts[:8])
    t = time.perf_counter()
    pool = emb.encode(pool_texts)
    doc_s = time.perf_counter() - t
    uniq = list(dict.fromkeys(query_texts))
    t = time.perf_counter()
    qv = emb.encode(uniq)
    q_s = time.perf_counter() - t
    return {"pool": pool, "queries": dict(zip(uniq, qv)), "encode_docs_per_s": round(len(pool_texts) / doc_s, 1),
            "encode_queries_per_s": round(len(uniq) / q_s, 1), "peak_rss_mb": round(peak_rss_mb())}


def _phase_ray_embed(sample_dir: str, workdir: str) -> dict:
    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.raysession import ensure_ray
    from zelo_ray.retrieval.indexing import build_dense

    cfg = load_config(None, [f"data.dataset={sample_dir}", f"data.workdir={workdir}"])
    shutil.rmtree(workdir, ignore_errors=True)
    col = prepare(sample_dir, layout_at(workdir).data)
    ensure_ray(cfg.ray)
    r = build_dense(col, str(Path(workdir) / "dense"), cfg, progress=False)
    actors = peak_rss_of("DocEmbedder")
    import ray
    ray.shutdown()
    return {"docs": r["docs"], "seconds": r["embed_s"], "docs_per_s": r["docs_per_s"],
            "driver_peak_rss_mb": round(peak_rss_mb()),
            "actor_peak_rss_mb": round(max(actors.values())) if actors else None}


def _phase_ray_retrieve(dataset: str, workdir: str) -> dict:
    from zelo_ray.config import load_config
    from zelo_ray.retrieval.pipeline import run_retrieve

    cfg = load_config(None, [f"data.dataset={dataset}", f"data.workdir={workdir}"])
    r = run_retrieve(cfg)
    search = peak_rss_of("HybridSearch")
    query = peak_rss_of("QueryEmbedder")
    import ray
    ray.shutdown()
    return {"queries": r["queries"], "seconds": r["seconds"], "queries_per_s": r["queries_per_s"],
            "candidate_rows": r["rows"], "driver_peak_rss_mb": round(peak_rss_mb()),
            "search_actor_peak_rss_mb": round(max(search.values())) if search else None,
            "query_actor_peak_rss_mb": round(max(query.values())) if query else None}


def _phase_dense_store(uri: str, vectors_file: str, n_rows: int, ann: bool) -> dict:
    import pyarrow as pa

    from zelo_ray.retrieval.dense import DenseStore

    shutil.rmtree(uri, ignore_errors=True)
    vecs = np.load(vectors_file, mmap_mode="r")
    store = DenseStore(uri, model="bench")
    t = time.perf_counter()
    for s in range(0, n_rows, 8192):
        v = np.ascontiguousarray(vecs[s:s + 8192])
        store.append([pa.table({"row": pa.array(np.arange(s, s + len(v))),
                                "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])})])
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    state = store.finalise(n_rows=n_rows, ann_min_rows=1 if ann else n_rows + 1)
    return {"write_s": round(write_s, 2), "write_vectors_per_s": round(n_rows / write_s),
            "finalise_s": round(time.perf_counter() - t, 2), "ann": state["ann"],
            "peak_rss_mb": round(peak_rss_mb())}


def _phase_search(corpus: str, bm25: str, dense_exact: str, dense_ann: str, texts: list[str],
                  qvecs_file: str, k: int, threads: int, probes: tuple[int, ...] = (8, 16, 32)) -> dict:
    import pyarrow as pa

    from zelo_ray.retrieval.bm25 import BM25Searcher
    from zelo_ray.retrieval.dense import DenseSearcher
    from zelo_ray.retrieval.search import HybridSearch

    qv = np.load(qvecs_file)
    n = len(texts)
    batch = 1024
    out: dict = {"batch": batch}

    def timed(fn) -> float:
        fn(0, min(batch, n))  # warm-up: page the index in
        t = time.perf_counter()
        for s in range(0, n, batch):
            fn(s, min(s + batch, n))
        return round(n / (time.perf_counter() - t))

    def recall(searcher) -> float:
        got = [r for r, _ in searcher.search(qv[:500], k)]
        return round(float(np.mean([len(np.intersect1d(x, y)) / len(x) for x, y in zip(exact_top, got)])), 4)

    b = BM25Searcher(bm25, threads=threads)
    out["bm25_qps"] = timed(lambda s, e: b.search(texts[s:e], k))
    d = DenseSearcher(dense_exact, mode="exact", threads=threads)
    out["dense_exact_qps"] = timed(lambda s, e: d.search(qv[s:e], k))
    exact_top = [r for r, _ in d.search(qv[:500], k)]
    del d
    for p in probes:
        t = time.perf_counter()
        iv = DenseSearcher(dense_exact, mode="ivf", ivf_probe=p, threads=threads)
        out[f"dense_ivf{p}"] = {"build_s": round(time.perf_counter() - t, 2),
                                "qps": timed(lambda s, e: iv.search(qv[s:e], k)), "recall_vs_exact": recall(iv)}
        del iv
    if dense_ann:
        a = DenseSearcher(dense_ann, mode="ann")
        out["dense_lancedb_ivfpq"] = {"qps": timed(lambda s, e: a.search(qv[s:e], k)), "recall_vs_exact": recall(a)}
        del a
    tables = []
    for s in range(0, n, batch):
        e = min(s + batch, n)
        tables.append(pa.table({"query_id": [f"q{i}" for i in range(s, e)], "text": texts[s:e],
                                "vector": pa.FixedSizeListArray.from_arrays(pa.array(qv[s:e].ravel()), qv.shape[1])}))
    for mode, p in [("exact", None), *[("ivf", p) for p in probes]]:
        h = HybridSearch(corpus=corpus, bm25_path=bm25, dense_uri=dense_exact, k_bm25=k, k_dense=k,
                         threads=threads, dense_mode=mode, ivf_probe=p or 32)
        name = f"hybrid_{mode}{p or ''}"
        qps = timed(lambda s, e: h(tables[s // batch]))
        out[name] = {"qps": qps, "over_bm25": round(qps / out["bm25_qps"], 3)}
        del h
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


def _in_subprocess(fn, *args):
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


def run(*, n_docs: int = 100_000, n_queries: int = 2000, workdir: str = "runs/bench-retrieval",
        embed_sample: int = 1000, k: int = 100, seed: int = 0, ann: bool = True, threads: int = 2) -> dict:
    from zelo_ray.data import prepare

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    docs = _source_docs()
    src = synth_collection(wd / "synth", n_docs, n_queries, seed, docs)
    col = prepare(str(wd / "synth"), layout_at(wd).data, force=True)
    rng = np.random.default_rng(seed)
    pool_idx = rng.choice(len(docs), size=min(embed_sample, len(docs)), replace=False)
    pool_texts = [f"{docs[i][0]}\n{docs[i][1]}" if docs[i][0] else docs[i][1] for i in pool_idx]
    sample_dir = wd / "sample"
    sample_dir.mkdir(exist_ok=True)
    with open(sample_dir / "corpus.jsonl", "w") as fh:
        for j, i in enumerate(pool_idx):
            fh.write(json.dumps({"_id": f"p{j}", "title": docs[i][0], "text": docs[i][1]}) + "\n")
    (sample_dir / "queries.jsonl").write_text('{"_id": "q0", "text": "x"}\n')
    texts = [r for r in col.queries()["text"].to_pylist()]

    result: dict = {"machine": machine(), "n_docs": n_docs, "n_queries": n_queries, "k": k,
                    "embed_sample": len(pool_idx), "threads": threads}
    bm25_path, dense_path = layout_at(wd).bm25, Path(layout_at(wd).dense)
    result["bm25_index"] = _in_subprocess(_phase_bm25, str(col.corpus_path), str(bm25_path))
    emb = _in_subprocess(_phase_embed, pool_texts, texts)
    result["dense_encode"] = {k_: v for k_, v in emb.items() if k_ not in ("pool", "queries")}
    result["dense_index_ray"] = _in_subprocess(_phase_ray_embed, str(sample_dir), str(wd / "ray-embed"))
    # stand-in vectors for the synthetic corpus (see module docstring)
    pool = emb["pool"]
    m = len(pool)
    vecs = pool[src[:, 0] % m] + pool[src[:, 1] % m] + 0.3 * rng.standard_normal((n_docs, pool.shape[1])).astype(np.float32) / np.sqrt(pool.shape[1])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    np.save(wd / "vectors.npy", vecs.astype(np.float32))
    np.save(wd / "qvecs.npy", np.stack([emb["queries"][t] for t in texts]).astype(np.float32))
    result["dense_store_exact"] = _in_subprocess(_phase_dense_store, str(dense_path), str(wd / "vectors.npy"), n_docs, False)
    if ann:
        result["dense_store_ann"] = _in_subprocess(_phase_dense_store, str(wd / "dense-ann"), str(wd / "vectors.npy"), n_docs, True)
    result["search"] = _in_subprocess(_phase_search, str(col.corpus_path), str(bm25_path), str(dense_path),
                                      str(wd / "dense-ann") if ann else "", texts, str(wd / "qvecs.npy"), k, threads)
    # end to end through Ray Data, query embedding included; the store is laid out as `zelo
    # index` would (workdir/data, workdir/index/{bm25,dense})
    result["ray_retrieve"] = _in_subprocess(_phase_ray_retrieve, str(wd / "synth"), str(wd))
    s = result["search"]
    result["targets"] = {name: {"qps_ge_100": v["qps"] >= 100, "ge_half_bm25": v["over_bm25"] >= 0.5}
                         for name, v in s.items() if name.startswith("hybrid_")}
    return result


def bm25_variants(datasets: list[str], *, workdir: str = "runs/bench-bm25",
                  tokenizers: tuple[str, ...] = ("en_stem", "en_stem_stop", "default")) -> dict:
    """BM25 alone, per analyzer: nDCG@10, Recall@100 and MAP@1000 (for comparison with the
    MAP figures usually published for these collections)."""
    import pytrec_eval

    from zelo_ray.data import prepare
    from zelo_ray.eval.metrics import judged_queries
    from zelo_ray.retrieval.bm25 import BM25Searcher, build_bm25

    out: dict = {}
    for name in datasets:
        col = prepare(name, layout_at(Path(workdir) / name).data)
        qrels = col.qrels("test")
        judged = judged_queries(qrels)
        q = col.queries()
        texts = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))
        ids = np.asarray(col.doc_ids().to_pylist(), dtype=object)
        ev = pytrec_eval.RelevanceEvaluator({k: qrels[k] for k in judged},
                                            {"ndcg_cut.10", "recall.100", "map_cut.1000"})
        out[name] = {}
        for tok in tokenizers:
            path = Path(workdir) / name / f"bm25-{tok}"
            build_bm25(col.corpus_path, path, tokenizer=tok)
            res = BM25Searcher(path).search([texts[x] for x in judged], 1000)
            run = {x: {ids[r]: float(len(rows) - i) for i, r in enumerate(rows)}
                   for x, (rows, _) in zip(judged, res)}
            per = ev.evaluate(run)
            out[name][tok] = {m: round(float(np.mean([per.get(x, {}).get(k, 0.0) for x in judged])), 4)
                              for m, k in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100"),
                                           ("map", "map_cut_1000"))}
    return {"machine": machine(), "results": out}
