"""`zelo index`: prepare the collection, embed it into LanceDB with a Ray Data actor pool and
build the Tantivy BM25 index, both restartable.

The BM25 index is built in a driver thread (Tantivy's writer is multi-threaded and releases the
GIL) while Ray Data streams the corpus through the embedding actors. Vectors are appended to
LanceDB every ``index.commit_rows`` rows as they arrive; a killed run loses at most that many,
and the next run embeds only the rows missing from the table.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from tqdm import tqdm

from zelo_ray.config import ZeloConfig
from zelo_ray.data import Collection, prepare
from zelo_ray.layout import layout
from zelo_ray.retrieval.bm25 import build_bm25
from zelo_ray.retrieval.dense import DenseStore
from zelo_ray.retrieval.embedder import vectors_key

__all__ = ["build_dense", "run_index"]

log = logging.getLogger(__name__)


def _embedded_batches(col: Collection, cfg: ZeloConfig, done):
    """The Ray Data stream of (row, vector) batches for the rows not in ``done``."""
    import ray

    from zelo_ray.reach import for_workers
    from zelo_ray.retrieval.embedder import DocEmbedder

    icfg = cfg.index
    threads = icfg.embed_threads or max(1, (os.cpu_count() or 1) // icfg.embed_actors)
    # read tasks may run on any node: they get an address every node can read
    ds = ray.data.read_parquet(for_workers(cfg, col.corpus_path, what="index")
                               ).select_columns(["row", "title", "text"])
    ds = ds.map_batches(
        DocEmbedder,
        fn_constructor_kwargs=dict(model=icfg.model, done=done, batch_size=icfg.encode_batch_size,
                                   threads=threads, max_seq_length=icfg.max_seq_length, backend=icfg.backend,
                                   device="cuda" if icfg.embed_gpus else None),
        batch_size=icfg.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=icfg.embed_actors),
        num_cpus=icfg.embed_cpus, num_gpus=icfg.embed_gpus or None)
    return ds.iter_batches(batch_size=None, batch_format="pyarrow")


def _embed_missing(col: Collection, cfg: ZeloConfig, store: DenseStore, done, todo: int,
                   progress: bool) -> None:
    """Stream the missing rows' vectors into ``store``, appending every ``commit_rows``."""
    from ray.data import DataContext

    icfg = cfg.index
    # Ray Data fills output blocks up to target_max_block_size (128 MiB) before handing
    # them on, which would hold back a whole corpus' vectors until the end; blocks of about
    # one batch stream vectors to the store as they are computed.
    ctx = DataContext.get_current()
    saved_block_size = ctx.target_max_block_size
    ctx.target_max_block_size = icfg.batch_size * 4096
    buffer, buffered = [], 0
    bar = tqdm(total=todo, desc="embed docs", unit="doc", disable=not progress, smoothing=0.1)
    try:
        for batch in _embedded_batches(col, cfg, done):
            buffer.append(batch)
            buffered += batch.num_rows
            bar.update(batch.num_rows)
            if buffered >= icfg.commit_rows:
                store.append(buffer)
                buffer, buffered = [], 0
        store.append(buffer)
    finally:
        bar.close()
        ctx.target_max_block_size = saved_block_size


def build_dense(col: Collection, uri: str, cfg: ZeloConfig, *, progress: bool = True) -> dict:
    """Embed every corpus row not yet in the LanceDB table at ``uri``; then finalise it."""
    from zelo_ray.raysession import ensure_ray

    icfg = cfg.index
    # Ray first: starting it forks its processes, and a LanceDB handle open in this process at a
    # fork is inherited by the children (LanceDB warns once per child)
    ensure_ray(cfg.ray)
    store = DenseStore(uri, model=vectors_key(icfg.model, icfg.max_seq_length, icfg.backend))
    state = store.state()
    n = col.n_docs
    if state.get("complete") and state.get("rows") == n:
        return {"docs": n, "embedded": 0, "skipped": True, "ann": state.get("ann")}
    done = store.done_mask(n)
    todo = int(n - done.sum())
    t0 = time.perf_counter()
    if todo:
        _embed_missing(col, cfg, store, done, todo, progress)
    embed_s = time.perf_counter() - t0
    state = store.finalise(n_rows=n, ann_min_rows=icfg.ann_min_rows, index_type=icfg.ann_index,
                           num_partitions=icfg.num_partitions, num_sub_vectors=icfg.num_sub_vectors)
    return {"docs": n, "embedded": todo, "skipped": False, "embed_s": round(embed_s, 2),
            "docs_per_s": round(todo / embed_s, 1) if todo else None,
            "finalise_s": round(time.perf_counter() - t0 - embed_s, 2), "ann": state.get("ann")}


def run_index(cfg: ZeloConfig, *, progress: bool = True) -> dict:
    """Prepare the collection and build both indexes; returns timings and counts."""
    paths = layout(cfg)
    t0 = time.perf_counter()
    col = prepare(cfg.data.dataset, paths.data)
    report = {"dataset": col.name, "docs": col.n_docs, "prepare_s": round(time.perf_counter() - t0, 2)}
    bm25_result: dict = {}

    def _bm25() -> None:
        t = time.perf_counter()
        try:
            bm25_result.update(build_bm25(col.corpus_path, paths.bm25, tokenizer=cfg.index.bm25_tokenizer,
                                          commit_rows=cfg.index.bm25_commit_rows,
                                          heap_mb=cfg.index.bm25_heap_mb))
            bm25_result["seconds"] = round(time.perf_counter() - t, 2)
        except BaseException as exc:  # re-raised in the main thread
            bm25_result["error"] = exc

    thread = threading.Thread(target=_bm25, name="bm25-index", daemon=True)
    thread.start()
    try:
        report["dense"] = build_dense(col, paths.dense, cfg, progress=progress)
    finally:
        thread.join()
    if "error" in bm25_result:
        raise bm25_result["error"]
    report["bm25"] = bm25_result
    report["index_dir"] = str(paths.index)
    return report
