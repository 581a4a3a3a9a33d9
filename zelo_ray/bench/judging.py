"""Judging benchmarks (docs/benchmarks.md §7).

* ``throughput``: judge calls/s through the real caller (AsyncOpenAI, limits, retries, the vote
  store) against a local server in another process with fixed latency L and concurrency cap C;
  target ≥ 90% of C/L, and ≥ 90% of C/L·(1 − f) with a share f of injected 500s (each failed
  attempt occupies a server slot, so the retried share is lost capacity).
* ``scale``: pairs → simulated votes → Elo → calibration for Q queries × n candidates on this
  machine; wall time per stage, peak memory, projection to the paper's 112k queries.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.config import OpenAIJudgeConfig, SimulatedJudgeConfig, load_config
from zelo_ray.layout import layout_at

__all__ = ["throughput", "scale"]


def _synthetic_tasks(n_calls: int, judge: str) -> tuple[pa.Table, object]:
    from zelo_ray.judges.caller import TextTable

    docs = {f"d{i}": f"document {i} " + "lorem ipsum " * 40 for i in range(200)}
    texts = TextTable(queries={"q": "what is measured here"}, docs=docs)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 200, n_calls), rng.integers(0, 200, n_calls)
    tasks = pa.table({
        "pair_id": np.arange(n_calls, dtype=np.int64), "kind": ["within"] * n_calls,
        "probe": [False] * n_calls, "query_id": ["q"] * n_calls, "query_b": pa.nulls(n_calls, pa.string()),
        "doc_a": [f"d{i}" for i in a], "doc_b": [f"d{i}" for i in b], "judge": [judge] * n_calls,
        "swapped": np.zeros(n_calls, bool), "cache_key": np.arange(n_calls, dtype=np.int64) + 1})
    return tasks, texts


def _server(latency: float, concurrency: int, fail: float):
    proc = subprocess.Popen([sys.executable, "-m", "zelo_ray.judges.fake_server", "--latency", str(latency),
                             "--concurrency", str(concurrency), "--http-500", str(fail)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _stop(proc) -> dict:
    import json

    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0].strip().splitlines()
    return json.loads(out[-1]) if out else {}


def throughput(*, calls: int = 2000, latency: float = 0.1, concurrency: int = 32, fail: float = 0.2,
               executors: tuple[str, ...] = ("local", "ray"), log=print) -> dict:
    from zelo_ray.annotate.execute import Progress, execute
    from zelo_ray.judges.store import VoteStore

    ideal = concurrency / latency
    results = {"calls": calls, "latency_s": latency, "server_concurrency": concurrency,
               "ideal_calls_per_s": ideal, "runs": []}
    for executor in executors:
        for f in (0.0, fail):
            proc, url = _server(latency, concurrency, f)
            try:
                judge = OpenAIJudgeConfig(name="bench", model="fake", base_url=url, max_concurrency=concurrency,
                                          timeout_s=30, max_retries=20, backoff_s=0.02, backoff_max_s=0.2)
                cfg = load_config(None, [f"annotate.executor={executor}", "annotate.callers=1",
                                         "annotate.batch_size=256", "annotate.batches_in_flight=4",
                                         "ray.num_cpus=2"])
                cfg.annotate.judges = [judge]
                tasks, texts = _synthetic_tasks(calls, "bench")
                with tempfile.TemporaryDirectory() as tmp:
                    store = VoteStore(Path(tmp) / "votes")
                    if executor == "ray":  # start Ray (and pay its start-up) outside the timing
                        from zelo_ray.raysession import ensure_ray
                        ensure_ray(cfg.ray)
                    progress = Progress(calls, log_fn=lambda s: None)
                    t0, c0 = time.perf_counter(), time.process_time()
                    execute(tasks, cfg, store, texts, progress)
                    store.flush()
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    votes = store.read()
            finally:
                server = _stop(proc)
            answered = votes.num_rows - votes["score"].null_count
            attempts = server.get("total", 0)
            target = 0.9 * ideal * (1 - f)
            busy = server.get("busy_s")
            served = calls / busy if busy else None
            row = {"executor": executor, "fail": f, "wall_s": round(wall, 2), "answered": int(answered),
                   "server_requests": attempts, "calls_per_s": round(calls / wall, 1),
                   "fraction_of_ideal": round(calls / wall / ideal, 3),
                   "server_busy_s": round(busy, 2) if busy else None,
                   "served_calls_per_s": round(served, 1) if served else None,
                   "served_fraction_of_ideal": round(served / ideal, 3) if served else None,
                   "target_calls_per_s": round(target, 1), "met_wall": calls / wall >= target,
                   "met_served": bool(served and served >= target),
                   "driver_cpu_ms_per_call": round(cpu / calls * 1e3, 2),
                   "max_inflight": server.get("max_inflight")}
            log(f"{executor:5s} fail={f:.0%}: {row['calls_per_s']} calls/s over the whole run "
                f"({row['fraction_of_ideal']:.1%} of C/L={ideal:.0f}), {row['served_calls_per_s']} while "
                f"the server was busy (start-up excluded); target {target:.0f}: whole run "
                f"{'met' if row['met_wall'] else 'NOT met'}, busy window "
                f"{'met' if row['met_served'] else 'NOT met'}; {attempts} requests for {calls} calls, "
                f"{answered} answered; {row['driver_cpu_ms_per_call']} ms driver CPU per call")
            results["runs"].append(row)
    return results


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _synthetic_run(tmp: Path, queries: int, docs: int, chunk: int = 2000) -> tuple[Path, pa.Table]:
    """Candidates (written in chunks, so the benchmark's own data never weighs on the driver's
    peak memory) and sparse graded qrels: ten judged documents per query, as real qrels are."""
    rng = np.random.default_rng(0)
    cand, qrels_path = layout_at(tmp).candidates, tmp / "qrels.parquet"
    if cand.exists() and qrels_path.exists():  # the same run again (e.g. a re-run with nothing to ask)
        return cand, pq.read_table(qrels_path)
    schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("rank", pa.int32())])
    judged = []
    with pq.ParquetWriter(cand, schema) as w:
        for start in range(0, queries, chunk):
            js = range(start, min(start + chunk, queries))
            qid = [f"q{j:06d}" for j in js for _ in range(docs)]
            did = [f"d{j:06d}-{i:03d}" for j in js for i in range(docs)]
            rank = np.tile(np.arange(1, docs + 1, dtype=np.int32), len(js))
            w.write_table(pa.table({"query_id": qid, "doc_id": did, "rank": rank}, schema=schema))
            pick = rng.random(len(qid)) < min(1.0, 10 / docs)
            judged.append(pa.table({"query_id": pa.array(qid, pa.string()).filter(pa.array(pick)),
                                    "doc_id": pa.array(did, pa.string()).filter(pa.array(pick)),
                                    "relevance": pa.array(rng.integers(1, 5, int(pick.sum())).astype(np.int32))}))
    qrels = pa.concat_tables(judged)
    pq.write_table(qrels, qrels_path)
    return cand, qrels


def scale(*, queries: int = 10_000, docs: int = 100, judges: int = 1, executor: str = "local",
          workdir: str | None = None, bucket_queries: int | None = None, overrides: list[str] = (),
          log=print) -> dict:
    from zelo_ray.annotate.run import run_annotate

    tmp = Path(workdir or tempfile.mkdtemp(prefix="zelo-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cand, qrels = _synthetic_run(tmp, queries, docs)
    setup_s = time.perf_counter() - t0
    rss_setup = _peak_rss_gib()
    cfg = load_config(None, [f"annotate.top_n={docs}", f"annotate.executor={executor}",
                             f"annotate.output={tmp / 'annotate'}", "annotate.flush_rows=200000",
                             "annotate.batch_size=65536", "ray.num_cpus=2",
                             *([f"annotate.bucket_queries={bucket_queries}"] if bucket_queries else []),
                             *overrides])
    cfg.annotate.judges = [SimulatedJudgeConfig(name=f"sim-{i}", kind="simulated", model=f"sim-{i}")
                           for i in range(judges)]
    t0 = time.perf_counter()
    report = run_annotate(cfg, log_fn=log, qrels=qrels, candidates=str(cand))
    wall = time.perf_counter() - t0
    votes = report["judge_calls"]
    projected = wall * 112_000 / queries
    out = {"queries": queries, "docs": docs, "judges": judges, "executor": executor,
           "bucket_queries": getattr(cfg.annotate, "bucket_queries", None), "buckets": report.get("buckets"),
           "pairs": report["pairs"], "votes": votes, "asked": report["asked_this_run"], "wall_s": round(wall, 1),
           "votes_per_s": round(votes / wall, 0), "stage_s": report["timings"], "setup_s": round(setup_s, 1),
           "peak_rss_gib": round(_peak_rss_gib(), 2), "peak_rss_after_setup_gib": round(rss_setup, 2),
           "projected_112k_queries_s": round(projected, 0), "unchanged": bool(report.get("unchanged")),
           "converged_queries": report["elo"]["converged_queries"], "cpu_count": os.cpu_count()}
    log(f"{queries:,} queries × {docs} docs: {report['pairs']:,} pairs, {votes:,} votes in {wall:.1f} s "
        f"({votes / wall:,.0f} votes/s), peak RSS {out['peak_rss_gib']} GiB; stages {report['timings']}; "
        f"112k queries ≈ {projected / 60:.1f} min on this machine")
    return out
