"""`zelo retrieve`: stream the query set through Ray Data — query embedding in one actor pool,
hybrid search in another — and write the ``candidates`` Parquet dataset.

Output goes to a temporary directory that is renamed when complete, so a crash never leaves a
partial candidates set behind that a later stage could mistake for a finished one.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from zelo_ray.config import ZeloConfig
from zelo_ray.data import open_collection
from zelo_ray.retrieval.indexing import index_paths

__all__ = ["candidates_path", "run_retrieve"]


def candidates_path(cfg: ZeloConfig) -> Path:
    return Path(cfg.retrieve.output or Path(cfg.workdir()) / "candidates.parquet")


def run_retrieve(cfg: ZeloConfig) -> dict:
    import pyarrow.parquet as pq
    import ray

    from zelo_ray.raysession import ensure_ray
    from zelo_ray.retrieval.embedder import QueryEmbedder
    from zelo_ray.retrieval.search import HybridSearch

    paths = index_paths(cfg)
    col = open_collection(paths.data)
    rcfg, icfg = cfg.retrieve, cfg.index
    for what, p in (("BM25 index", paths.bm25), ("dense index", Path(paths.dense))):
        if "://" not in str(p) and not Path(p).exists():
            raise FileNotFoundError(f"{p}: no {what}; run `zelo index` first")
    out = candidates_path(cfg)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ensure_ray(cfg.ray)
    t0 = time.perf_counter()
    threads = icfg.embed_threads or max(1, (os.cpu_count() or 1) // rcfg.query_actors)
    ds = ray.data.read_parquet(str(col.queries_path)).select_columns(["query_id", "text"])
    ds = ds.map_batches(
        QueryEmbedder,
        fn_constructor_kwargs=dict(model=icfg.model, batch_size=icfg.encode_batch_size, threads=threads,
                                   max_seq_length=icfg.max_seq_length,
                                   device="cuda" if icfg.embed_gpus else None),
        batch_size=rcfg.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=rcfg.query_actors),
        num_cpus=rcfg.query_cpus, num_gpus=icfg.embed_gpus or None)
    ds = ds.map_batches(
        HybridSearch,
        fn_constructor_kwargs=dict(corpus=str(col.corpus_path), bm25_path=str(paths.bm25),
                                   dense_uri=str(paths.dense), k_bm25=rcfg.k_bm25, k_dense=rcfg.k_dense,
                                   rrf_c=rcfg.rrf_c, threads=rcfg.search_threads,
                                   dense_mode=rcfg.dense_mode, nprobes=rcfg.nprobes,
                                   refine_factor=rcfg.refine_factor, ivf_lists=rcfg.ivf_lists,
                                   ivf_probe=rcfg.ivf_probe),
        batch_size=rcfg.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=rcfg.search_actors), num_cpus=rcfg.search_cpus)
    ds.write_parquet(str(tmp))
    seconds = time.perf_counter() - t0
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    meta = pq.ParquetDataset(str(out))
    rows = sum(f.metadata.num_rows for f in meta.fragments)
    n_queries = col.manifest["counts"]["queries"]
    return {"candidates": str(out), "queries": n_queries, "rows": rows,
            "seconds": round(seconds, 2), "queries_per_s": round(n_queries / seconds, 1)}
