"""`zelo retrieve`: stream the query set through Ray Data — query embedding in one actor pool,
hybrid search in another — and write the ``candidates`` Parquet dataset.

Output goes to a temporary directory that is renamed when complete, so a crash never leaves a
partial candidates set behind that a later stage could mistake for a finished one. A query whose
embedding or search raises is skipped and listed in ``candidates.errors.parquet``; a re-run on the
same queries, indexes and settings retrieves only those queries and adds them to the set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pyarrow as pa

from zelo_ray.config import ZeloConfig
from zelo_ray.data import open_collection
from zelo_ray.faults import ErrorLog, IsolatedBatches, StageFailed, check_failures
from zelo_ray.retrieval.search import CANDIDATES
from zelo_ray.layout import layout
from zelo_ray.reuse import saved_if_unchanged
from zelo_ray.reach import alive_nodes, for_workers

__all__ = ["run_retrieve"]

_STATE = "_zelo_retrieve.json"  # leading underscore: Parquet dataset readers skip it


def _fingerprint(cfg: ZeloConfig, col, paths) -> str:
    """What the candidates depend on: the queries, both indexes' states and the retrieve settings
    (``output`` and the actor/batch sizing do not change a query's candidates)."""
    states = []
    for state in (Path(paths.bm25) / "zelo_bm25_state.json", Path(str(paths.dense)) / "zelo_dense_state.json"):
        states.append(state.read_text() if state.exists() else str(state))
    settings = cfg.retrieve.model_dump(include={"k_bm25", "k_dense", "rrf_c", "dense_mode", "ivf_lists",
                                                "ivf_probe", "nprobes", "refine_factor"})
    blob = json.dumps([col.manifest.get("counts"), os.path.getsize(col.queries_path), states, settings,
                       cfg.index.model, cfg.index.max_seq_length], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_retrieve(cfg: ZeloConfig) -> dict:
    """Retrieve every query's candidates, or — when the candidates of the same queries, indexes and
    settings exist — only the queries the last run failed. A query that raises is listed in the
    errors table (`layout(cfg).retrieve_errors`) and skipped; the stage fails only when more than
    ``errors.max_fraction`` of the queries failed, after keeping every query that succeeded."""
    from zelo_ray.raysession import ensure_ray

    paths = layout(cfg)
    col = open_collection(paths.data)
    for what, p in (("BM25 index", paths.bm25), ("dense index", Path(paths.dense))):
        if "://" not in str(p) and not Path(p).exists():
            raise FileNotFoundError(f"{p}: no {what}; run `zelo index` first")
    out, errors = paths.candidates, ErrorLog(paths.retrieve_errors, "retrieve")
    fingerprint = _fingerprint(cfg, col, paths)
    n_queries = col.manifest["counts"]["queries"]
    retry = out.is_dir() and saved_if_unchanged(out / _STATE, fingerprint, field="fingerprint") is not None
    failed_before = errors.failed_ids() if retry else []
    if retry and not failed_before:
        return _report(out, n_queries, 0.0, {"failed": 0, "total": n_queries, "errors": None}, reused=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    errors.reset()
    ensure_ray(cfg.ray)
    t0 = time.perf_counter()
    _write_here(_search_pipeline(cfg, col, paths, failed_before if retry else None, errors), tmp)
    seconds = time.perf_counter() - t0
    table = errors.finish()
    _check_written(tmp, (len(failed_before) if retry else n_queries) - len(set(table["record_id"].to_pylist())))
    _install(out, tmp, retry)
    (out / _STATE).write_text(json.dumps({"fingerprint": fingerprint, "queries": n_queries,
                                          "failed": table.num_rows}))
    # raises past errors.max_fraction, after every finished query is in place
    failed = check_failures(table, n_queries, cfg.errors.max_fraction, stage="retrieve", path=errors.path,
                            what="queries")
    return _report(out, n_queries, seconds, failed, retried=len(failed_before) if retry else None)


def _search_pipeline(cfg: ZeloConfig, col, paths, only: list[str] | None, errors: ErrorLog):
    """The Ray Data pipeline: queries (all, or only ``only``) → embedder actors → hybrid search
    actors, each batch isolated so a failing query lands in the errors table."""
    import pyarrow.compute as pc
    import ray

    from zelo_ray.retrieval.embedder import QueryEmbedder
    from zelo_ray.retrieval.search import HybridSearch

    rcfg, icfg = cfg.retrieve, cfg.index
    nodes = alive_nodes()
    # the search actors may run on any node: they get addresses every node can read
    corpus = for_workers(cfg, col.corpus_path, what="retrieve", nodes=nodes)
    bm25 = for_workers(cfg, paths.bm25, what="retrieve", nodes=nodes)
    local_dense = "://" not in str(paths.dense)
    dense = for_workers(cfg, paths.dense, what="retrieve", nodes=nodes) if local_dense else str(paths.dense)
    node_copy = tuple(name for name, a, b in (("bm25", bm25, str(paths.bm25)), ("dense", dense, str(paths.dense)))
                      if a != b)
    threads = icfg.embed_threads or max(1, (os.cpu_count() or 1) // rcfg.query_actors)
    if only is not None:  # only the queries that failed last time (a short list: read in the driver)
        q = col.queries().select(["query_id", "text"])
        ds = ray.data.from_arrow(q.filter(pc.is_in(q["query_id"], value_set=pa.array(only, pa.string()))))
    else:
        ds = ray.data.read_parquet(for_workers(cfg, col.queries_path, what="retrieve", nodes=nodes)
                                   ).select_columns(["query_id", "text"])
    isolation = dict(stage="retrieve", id_column="query_id", errors=str(errors.path), inject=cfg.errors.inject)
    ds = ds.map_batches(
        IsolatedBatches,
        fn_constructor_kwargs=dict(inner=QueryEmbedder, inner_kwargs=dict(
            model=icfg.model, batch_size=icfg.encode_batch_size, threads=threads,
            max_seq_length=icfg.max_seq_length, device="cuda" if icfg.embed_gpus else None,
            backend=icfg.backend), **isolation),
        batch_size=rcfg.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=rcfg.query_actors),
        num_cpus=rcfg.query_cpus, num_gpus=icfg.embed_gpus or None)
    return ds.map_batches(
        IsolatedBatches,
        fn_constructor_kwargs=dict(inner=HybridSearch, inner_kwargs=dict(
            corpus=corpus, bm25_path=bm25, dense_uri=dense, node_copy=node_copy,
            k_bm25=rcfg.k_bm25, k_dense=rcfg.k_dense, rrf_c=rcfg.rrf_c, threads=rcfg.search_threads,
            dense_mode=rcfg.dense_mode, nprobes=rcfg.nprobes, refine_factor=rcfg.refine_factor,
            ivf_lists=rcfg.ivf_lists, ivf_probe=rcfg.ivf_probe), **isolation),
        batch_size=rcfg.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=rcfg.search_actors), num_cpus=rcfg.search_cpus)


def _install(out: Path, tmp: Path, retry: bool) -> None:
    """Put the new parts in place: a retry's join the finished set; a full run replaces it."""
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    if retry:
        # the new queries' parts join the finished set; without the state file until they are all
        # in, a crash here makes the next run start over rather than add them twice
        (out / _STATE).unlink(missing_ok=True)
        for part in (sorted(tmp.glob("*.parquet")) if tmp.exists() else []):
            os.replace(part, out / f"retry-{uuid.uuid4().hex[:8]}-{part.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    if tmp.exists():
        os.replace(tmp, out)
    else:  # every query failed: an empty candidates set, so the errors say what happened
        out.mkdir()
        pq.write_table(CANDIDATES.empty_table(), out / "empty.parquet")


def _write_here(ds, tmp: Path, rows_per_file: int = 1_000_000) -> None:
    """Write the candidates from this process, as they stream in: Ray Data's own writers are
    tasks that may run on another node, whose disk this process cannot see."""
    import pyarrow.parquet as pq

    tmp.mkdir(parents=True)
    writer, n_files, rows = None, 0, 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            if batch.num_rows == 0:
                continue
            if writer is None or rows >= rows_per_file:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(tmp / f"part-{n_files:06d}.parquet", CANDIDATES)
                n_files, rows = n_files + 1, 0
            writer.write_table(batch.select(CANDIDATES.names).cast(CANDIDATES))
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()


def _check_written(tmp: Path, expected: int) -> None:
    """Every query that did not fail must have candidates in ``tmp`` before it is published: a
    partial (or empty) directory must never be renamed into place and reported as complete."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    files = sorted(tmp.glob("*.parquet")) if tmp.exists() else []
    found = pads.dataset([str(f) for f in files], format="parquet").to_table(columns=["query_id"]) if files else None
    written = len(pc.unique(found["query_id"])) if found is not None and found.num_rows else 0
    if written < expected:
        raise StageFailed(
            f"retrieve: {expected - written:,} of {expected:,} queries that did not fail have no candidates in "
            f"{tmp} ({len(files)} files written). The rows went missing between the search actors and "
            "this directory; nothing was published. Re-run the stage (it starts over).")


def _report(out: Path, n_queries: int, seconds: float, failed: dict, *, reused: bool = False,
            retried: int | None = None) -> dict:
    import pyarrow.parquet as pq

    meta = pq.ParquetDataset(str(out))
    rows = sum(f.metadata.num_rows for f in meta.fragments)
    report = {"candidates": str(out), "queries": n_queries, "rows": rows,
              "seconds": round(seconds, 2),
              "queries_per_s": round(n_queries / seconds, 1) if seconds else None,
              "failed": failed}
    if reused:
        report["reused"] = True
    if retried is not None:
        report["retried"] = retried
    return report
