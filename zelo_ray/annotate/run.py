"""`zelo annotate`: candidates → pairs → judge calls (streamed through an actor pool, stored as
they arrive) → Elo → cross-query calibration → targets, with a run report.

:func:`run_annotate` plans the run (the queries, cut into buckets whose size does not depend on
the size of the run, and the cross-query pairs), then takes each bucket through four named steps
— **pairs** (each query's graph), **tasks** (one call per pair and judge, minus calls already
answered), **judge** (ask the rest; answers are stored as they come), **fit** (Elo per query) —
and ends with **calibrate** (one offset per query from the cross-query pairs, then the targets)
and **report**. The driver holds one bucket at a time plus a few numbers per query.

Safe to kill at any moment and re-run: answers already stored are never asked again (cache
keys, :mod:`zelo_ray.judges.store`), and the Elo stage is recomputed from the store.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.annotate import diagnostics
from zelo_ray.annotate.buckets import Plan, bucket_nodes, plan_buckets
from zelo_ray.annotate.execute import Progress, execute
from zelo_ray.annotate.pairs import build_pairs, extra_pairs, query_bounds
from zelo_ray.annotate.qrels import qrels_grades, qrels_relevance
from zelo_ray.annotate.report import first_bucket_diagnostics, report_step
from zelo_ray.annotate.resume import fingerprint, input_fingerprint, unchanged
from zelo_ray.annotate.scores import (cross_outcomes, streaming_median, endpoint_scores, fit_calibration, fit_within,
                                      merge_within, task_scores, with_targets)
from zelo_ray.annotate.adaptive import adaptive_round
from zelo_ray.annotate.tasks import bucket_texts, build_tasks, calls_table
from zelo_ray.annotate.writers import Writers
from zelo_ray.annotate.teacher import clamp_mask, judge_rows, pair_sources
from zelo_ray.config import ZeloConfig
from zelo_ray.core.simulate import LABEL
from zelo_ray.faults import ErrorLog, check_failures
from zelo_ray.judges.caller import TextTable
from zelo_ray.judges.factory import preflight
from zelo_ray.judges.keys import text_hashes
from zelo_ray.judges.store import VoteStore
from zelo_ray.layout import layout
from zelo_ray.ticker import timed

__all__ = ["run_annotate", "Progress", "qrels_grades", "qrels_relevance", "execute"]

_CROSS_COLUMNS = ["pair_id", "query_id", "doc_a", "a_pos", "query_b", "doc_b", "b_pos"]


def run_annotate(cfg: ZeloConfig, *, log_fn=print, qrels: pa.Table | None = None,
                 candidates: str | None = None, collection=None, queries: list[str] | None = None,
                 teacher_only: bool = False) -> dict:
    """Run (or resume) the judging stage. ``qrels``/``candidates``/``collection`` default to the
    run directory's; the simulated judge is driven by ``qrels``. ``queries`` limits the stage to
    those query ids (e.g. the training queries). ``teacher_only``: in the SLM loop
    (:mod:`zelo_ray.annotate.teacher`), the first pass, before the SLM is distilled."""
    out = layout(cfg).annotate
    out.mkdir(parents=True, exist_ok=True)
    acfg = cfg.annotate
    timings: dict[str, float] = {}
    with timed(timings, "pairs_s"):
        run = _inputs(cfg, qrels, candidates, collection, queries)
    store = VoteStore(out / "votes", flush_rows=acfg.flush_rows, flush_s=acfg.flush_s)
    store.organize()  # answers logged by the callers of a run that was killed; damaged parts moved aside
    _say_moved_aside(store.moved_aside, store, log_fn)
    inputs = input_fingerprint(cfg, run, out, teacher_only=teacher_only)
    done = unchanged(out, inputs, store, acfg.retry_failed)
    if done is not None:
        log_fn(f"      nothing to do: the inputs, the config and {store.path} are as the last run left them "
               f"({done['judge_calls']:,} judge calls, all reused)")
        return done
    with timed(timings, "pairs_s"):
        plan = plan_step(cfg, run, out, log_fn)
    errors = ErrorLog(out / "errors.parquet", "annotate")
    errors.reset()
    totals = _Totals(cross_w=np.full(plan.cross.num_rows, np.nan), cross_valid=np.zeros(plan.cross.num_rows, bool),
                     elo_a=np.full(plan.cross.num_rows, np.nan), elo_b=np.full(plan.cross.num_rows, np.nan))
    writers = Writers(out)
    try:
        for b in range(plan.n_buckets):
            _bucket(cfg, run, plan, b, out, store, errors, totals, writers, timings, log_fn, teacher_only)
        writers.write("cross_pairs", plan.cross.select(_CROSS_COLUMNS))
        with timed(timings, "elo_s"):
            table = calibrate_step(cfg, run, plan, totals, writers)
        writers.close()
        if plan.n_buckets > 1:
            log_fn(f"      calibrated {len(plan.qids):,} queries · driver memory {_memory()}")
    finally:
        writers.abort()
        shutil.rmtree(out / ".buckets", ignore_errors=True)
    failed = errors.finish()
    totals.failures = check_failures(failed, totals.asked, cfg.errors.max_fraction, stage="annotate",
                                     path=errors.path, what="judge calls")
    if failed.num_rows:
        log_fn(f"      {failed.num_rows:,} judge calls could not be asked (listed in {errors.path}; a re-run "
               f"asks them again): {totals.failures['most_common']}")
    return report_step(cfg, run, plan, store, totals, table, out, timings,
                       fingerprint=fingerprint(inputs, store))


@dataclass
class _Inputs:
    candidates: str
    collection: object
    qrels: pa.Table | None
    queries: list[str] | None
    simulated: bool
    reads_texts: bool
    query_texts: dict | None = None
    query_hashes: tuple | None = None


@dataclass
class _Graph:
    nodes: pa.Table
    pairs: pa.Table
    cross: pa.Table
    cross_rows: np.ndarray
    """Rows of the plan's cross pairs judged with this bucket (those whose first query is here)."""
    n_queries: int
    texts: tuple | None = None
    """The bucket's texts and their hashes, read once (adaptive rounds reuse them)."""


@dataclass
class _Calls:
    tasks: pa.Table
    todo: pa.Table
    reused: int
    texts: TextTable | None


@dataclass
class _Totals:
    """What the run keeps across buckets: a few numbers per cross pair and per run."""

    cross_w: np.ndarray
    cross_valid: np.ndarray
    elo_a: np.ndarray
    elo_b: np.ndarray
    asked: int = 0
    reused: int = 0
    calls: int = 0
    missing: int = 0
    within: dict | None = None
    failures_by_judge: dict = field(default_factory=dict)
    first: dict | None = None
    failures: dict | None = None
    calibration: dict = field(default_factory=dict)
    fitted: list = field(default_factory=list)
    """Per bucket: (query indexes of its nodes, its Elo part file)."""


def _bucket(cfg: ZeloConfig, run, plan, b: int, out: Path, store: VoteStore, errors: ErrorLog, totals, writers,
            timings: dict, log_fn, teacher_only: bool) -> None:
    """One bucket of queries: pairs → judge calls (answered ones reused) → judges → Elo fit; the
    bucket's votes are compacted once its Elo is written."""
    acfg = cfg.annotate
    with timed(timings, "pairs_s"):
        graph = pairs_step(cfg, plan, b, out)
    if plan.n_buckets == 1:
        first = " in its first round" if cfg.graph.strategy == "adaptive" else ""
        log_fn(f"      {graph.n_queries:,} queries × top-{acfg.top_n}: {graph.pairs.num_rows:,} pairs{first} "
               f"({cfg.graph.strategy}, k={cfg.graph.k}) + {plan.cross.num_rows:,} cross-query pairs")
    with timed(timings, "tasks_s"):
        # every page of the bucket's votes read against its checksum before they count as asked
        _say_moved_aside(store.check(plan.partitions[b], pages=True), store, log_fn)
    calls = _judge_rounds(cfg, run, graph, store, errors, totals, timings, log_fn, quiet=plan.n_buckets > 1,
                          teacher_only=teacher_only)
    writers.write("pairs", graph.pairs)
    with timed(timings, "elo_s"):
        fitted = fit_step(cfg, plan, graph, calls, store, b, totals, writers, out)
    if b == 0:
        with timed(timings, "diagnostics_s"):
            totals.first = first_bucket_diagnostics(cfg, run, graph, fitted)
    store.compact(plan.partitions[b])
    if plan.n_buckets > 1:
        log_fn(f"      bucket {b + 1}/{plan.n_buckets}: {graph.n_queries:,} queries, "
               f"{calls.tasks.num_rows:,} calls ({calls.reused:,} reused) · "
               f"{totals.asked:,} asked so far, {totals.asked / max(timings.get('judge_s', 0), 1e-9):,.0f} "
               f"votes/s · driver memory {_memory()}")


def _judge_rounds(cfg: ZeloConfig, run, graph: _Graph, store: VoteStore, errors: ErrorLog, totals, timings: dict,
                  log_fn, *, quiet: bool, teacher_only: bool) -> _Calls:
    """tasks → judge for the bucket's pairs; with ``graph.strategy: adaptive``, again for each
    further round, whose pairs the Elo fit of the votes so far chooses (``graph.pairs`` grows)."""
    rounds = cfg.graph.rounds if cfg.graph.strategy == "adaptive" else 1
    earlier = 0  # tasks of this bucket's earlier rounds: answered by now, but not "reused"
    for r in range(rounds):
        with timed(timings, "tasks_s"):
            calls = tasks_step(cfg, run, graph, store, None if quiet or r else log_fn, teacher_only=teacher_only)
        calls.reused = max(calls.reused - earlier, 0)
        earlier = calls.tasks.num_rows
        with timed(timings, "judge_s"):
            judge_step(cfg, calls, graph, store, errors, totals, log_fn, quiet=quiet)
        if r == rounds - 1:
            break
        with timed(timings, "pairs_s"):
            step = adaptive_round(cfg, graph.nodes, graph.pairs, calls.tasks, store, r + 1)
        if step.pairs.num_rows == 0:
            break
        graph.pairs = pa.concat_tables([graph.pairs, step.pairs])
        if not quiet:
            log_fn(f"      round {r + 2}/{rounds}: +{step.pairs.num_rows:,} pairs for {step.queries:,} queries "
                   f"where the top {cfg.graph.top} is least certain"
                   + (f" ({step.settled:,} queries settled)" if step.settled else ""))
    return calls


def _say_moved_aside(notes: list[dict], store: VoteStore, log_fn) -> None:
    if notes:
        log_fn(f"      warning: {len(notes)} damaged vote part(s) moved aside to {store.path / 'quarantine'} "
               f"({notes[0]['part']}: {notes[0]['reason'][:120]}); their votes are asked again")


def _memory() -> str:
    """This process's resident memory, private and shared (Ray's object store pages it touched)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return "n/a"
    gib = lambda k: int(fields.get(k, "0 kB").split()[0]) / 2**20  # noqa: E731
    return (f"{gib('VmRSS'):.2f} GiB (private {gib('RssAnon'):.2f}, shared {gib('RssShmem'):.2f}; "
            f"peak {gib('VmHWM'):.2f})")


def _inputs(cfg: ZeloConfig, qrels, candidates, collection, queries) -> _Inputs:
    """Check every judge can run (a missing key fails before any work), find the candidates,
    the collection and, for simulated judges, the qrels that drive them."""
    from zelo_ray.data import open_collection

    acfg = cfg.annotate
    for j in acfg.judges:
        preflight(j)
    simulated = any(j.simulated for j in acfg.judges)
    reads_texts = any(not j.simulated for j in acfg.judges)
    cand = candidates or str(layout(cfg).candidates)
    if not Path(cand).exists():
        raise FileNotFoundError(f"{cand}: no candidates; run `zelo retrieve` first (or `zelo demo`)")
    if collection is None and (reads_texts or qrels is None):
        collection = open_collection(layout(cfg).data)
    split = acfg.query_split
    if split is not None:
        in_split = set(collection.qrels(split))
        queries = sorted(in_split if queries is None else in_split & set(queries))
    if qrels is None and simulated:
        qrels = pq.read_table(collection.qrels_path(split or cfg.data.split))
    run = _Inputs(cand, collection, qrels, queries, simulated, reads_texts)
    if reads_texts:
        q = collection.queries()
        run.query_texts = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))
        run.query_hashes = (q["query_id"].combine_chunks(), text_hashes(q["text"].to_pylist()))
    return run


def plan_step(cfg: ZeloConfig, run: _Inputs, out: Path, log_fn) -> Plan:
    """The run's queries and their buckets, and the cross-query pairs that calibrate queries
    against each other."""
    acfg = cfg.annotate
    plan = plan_buckets(run.candidates, acfg.top_n, queries=run.queries, max_queries=acfg.max_queries,
                        bucket_queries=acfg.bucket_queries, n_partitions=VoteStore(out / "votes").partitions,
                        k_cross=acfg.calibration.k, seed=acfg.seed, work=out / ".buckets")
    if plan.n_buckets > 1:
        log_fn(f"      {len(plan.qids):,} queries × top-{acfg.top_n} in {plan.n_buckets:,} buckets of ≤ "
               f"{acfg.bucket_queries:,} queries: pairs ({cfg.graph.strategy}, k={cfg.graph.k}) + "
               f"{plan.cross.num_rows:,} cross-query pairs")
    return plan


def pairs_step(cfg: ZeloConfig, plan: Plan, b: int, out: Path) -> _Graph:
    """Bucket ``b``'s nodes → each query's pair graph (+ pairs the refinement pass added), and the
    cross-query pairs judged with this bucket."""
    acfg = cfg.annotate
    nodes = bucket_nodes(plan, b, acfg.top_n)
    pairs = build_pairs(nodes, strategy=cfg.graph.strategy, k=cfg.graph.k, seed=acfg.seed)
    refine = out / "refine_pairs.parquet"
    if refine.exists():  # pairs added by the refinement pass (zelo_ray.workflows.refine)
        r = pq.read_table(refine)
        r = r.filter(pc.is_in(r["query_id"], value_set=pc.unique(nodes["query_id"])))
        extra = extra_pairs(nodes, r["query_id"].to_pylist(), r["doc_a"].to_pylist(), r["doc_b"].to_pylist())
        extra = extra.filter(pc.invert(pc.is_in(extra["pair_id"], value_set=pairs["pair_id"])))
        pairs = pa.concat_tables([pairs, extra]).sort_by([("query_id", "ascending")])
    rows = np.flatnonzero(plan.bucket[plan.cross["qa"].to_numpy()] == b) if plan.cross.num_rows else np.empty(0, int)
    cross = plan.cross.take(pa.array(rows, pa.int64())).select(_CROSS_COLUMNS)
    return _Graph(nodes, pairs, cross, rows, len(query_bounds(nodes)[1]))


def tasks_step(cfg: ZeloConfig, run: _Inputs, graph: _Graph, store: VoteStore, log_fn, *, teacher_only=False) -> _Calls:
    """One call per (pair, judge) with its A/B order and cache key (routed between the ensemble
    and the SLM in the SLM loop); the calls still to ask are those the vote store has no answer
    for, each distinct request once."""
    acfg = cfg.annotate
    texts = hashes = None
    if run.reads_texts:
        if graph.texts is None:  # nodes and cross pairs stay the same over a bucket's rounds
            graph.texts = bucket_texts(run, graph.nodes, graph.cross)
        texts, hashes = graph.texts
    items = calls_table(graph.pairs, graph.cross)
    tasks = build_tasks(items, acfg.judges, seed=acfg.seed, swap_probe=acfg.swap_probe, text_hashes=hashes,
                        relevance=qrels_relevance(run.qrels) if run.simulated else None,
                        rows=judge_rows(items, acfg, teacher_only=teacher_only))  # the SLM loop's routing
    partitions = np.unique(store.partition_of(graph.nodes["query_id"])) if graph.nodes.num_rows else []
    skip = store.answered_keys(partitions) if acfg.retry_failed else store.asked_keys(partitions)
    keys = tasks["cache_key"].to_numpy()
    todo_mask = ~np.isin(keys, skip)
    _, first = np.unique(keys, return_index=True)
    unique = np.zeros(len(keys), bool)
    unique[first] = True
    todo = tasks.filter(pa.array(todo_mask & unique))
    reused = int((~todo_mask).sum())
    if log_fn is not None:
        log_fn(f"      {tasks.num_rows:,} judge calls ({len(acfg.judges)} judges); {reused:,} answered in "
               f"{store.path} are reused; asking {todo.num_rows:,} via the {acfg.executor} executor")
    return _Calls(tasks, todo, reused, texts)


def judge_step(cfg: ZeloConfig, calls: _Calls, graph: _Graph, store: VoteStore, errors: ErrorLog,
               totals: _Totals, log_fn, *, quiet: bool) -> None:
    """Ask every call still to ask; answers reach the store as they arrive. A call that cannot be
    asked lands in ``errors.parquet`` (a re-run asks it again)."""
    # with several buckets, a line a minute inside a long bucket (real judges take hours per
    # bucket) and the bucket's own summary line at its end
    progress = Progress(calls.todo.num_rows, log_fn, every_s=60.0 if quiet else 30.0,
                        first_s=60.0 if quiet else 10.0, final=not quiet,
                        pending_pairs=calls.todo["pair_id"].to_numpy(),
                        n_pairs=graph.pairs.num_rows + graph.cross.num_rows)
    try:
        execute(calls.todo, cfg, store, calls.texts, progress, errors)
    finally:
        store.flush()
    store.organize()  # the callers are done: their logs become parts in the bucket's partitions
    totals.asked += calls.todo.num_rows
    totals.reused += calls.reused


def fit_step(cfg: ZeloConfig, plan: Plan, graph: _Graph, calls: _Calls, store: VoteStore, b: int,
             totals: _Totals, writers: Writers, out: Path) -> dict:
    """The bucket's stored votes → soft outcomes → Elo per query (kept in a part until the
    calibration); the ensemble's outcome per pair (``pair_outcomes.parquet``: what the pairwise
    SLM is distilled from); the cross pairs' outcomes and the Elo of their documents."""
    acfg = cfg.annotate
    names = [j.name for j in acfg.judges]
    partitions = np.unique(store.partition_of(graph.nodes["query_id"])) if graph.nodes.num_rows else []
    votes = store.read(partitions)
    ts = task_scores(calls.tasks, votes)
    fit = fit_within(graph.nodes, graph.pairs, ts, names, clamp=(clamp := clamp_mask(acfg)),
                     min_votes=acfg.min_votes, elo_cfg=cfg.elo)
    part = out / ".buckets" / f"elo-{b:05d}.parquet"
    pq.write_table(fit.table, part)
    starts, ids = query_bounds(graph.nodes)
    qindex = pc.index_in(pa.array(ids.tolist(), pa.string()), value_set=pa.array(plan.qids.tolist(), pa.string()))
    totals.fitted.append((qindex.to_numpy(zero_copy_only=False), np.diff(np.r_[starts, graph.nodes.num_rows]), part))
    w = np.where(fit.valid_within, fit.w_within, np.nan)
    source = pair_sources(graph.pairs["pair_id"].to_numpy(), acfg.slm.judge, acfg.slm.teacher_share, acfg.seed)
    writers.write("pair_outcomes", graph.pairs.select(["query_id", "pair_id", "doc_a", "doc_b"]).append_column(
        "p_a", pa.array(w, pa.float64(), mask=~fit.valid_within)).append_column("source", source))
    if graph.cross.num_rows:
        co = cross_outcomes(ts, graph.cross, names, clamp=clamp, min_votes=acfg.min_votes)
        totals.cross_w[graph.cross_rows], totals.cross_valid[graph.cross_rows] = co.w, co.valid
    for side, q_col, pos_col, dest in (("a", "qa", "a_pos", totals.elo_a), ("b", "qb", "b_pos", totals.elo_b)):
        if not plan.cross.num_rows:
            break
        rows = np.flatnonzero(plan.bucket[plan.cross[q_col].to_numpy()] == b)
        dest[rows] = endpoint_scores(fit, graph.nodes, plan.cross[q_col].to_numpy()[rows],
                                     plan.cross[pos_col].to_numpy()[rows].astype(np.int64), plan.qids)
    totals.within = merge_within(totals.within, fit.within)
    totals.calls += ts.num_rows
    totals.missing += int(ts["score"].null_count)
    totals.failures_by_judge = diagnostics.merge_failures(totals.failures_by_judge, diagnostics.failures(ts, names))
    return {"fit": fit, "votes": votes, "ts": ts}


def calibrate_step(cfg: ZeloConfig, run: _Inputs, plan: Plan, totals: _Totals, writers: Writers) -> pa.Table | None:
    """One offset per query from the cross-query pairs; then ``calibrated`` and ``target`` for
    every candidate (the median over the whole run), written to ``zelo.parquet``. Returns the
    first bucket's rows (for the report)."""
    acfg = cfg.annotate
    qa = plan.cross["qa"].to_numpy() if plan.cross.num_rows else np.empty(0, np.int64)
    qb = plan.cross["qb"].to_numpy() if plan.cross.num_rows else np.empty(0, np.int64)
    offsets, totals.calibration = fit_calibration(qa, qb, totals.elo_a, totals.elo_b, totals.cross_w,
                                                  totals.cross_valid, len(plan.qids), elo_cfg=cfg.elo,
                                                  cal_cfg=acfg.calibration)
    def calibrated():  # bucket by bucket: the run's scores are never all in memory at once
        for q, counts, p in totals.fitted:
            yield pq.read_table(p, columns=["elo"])["elo"].to_numpy(zero_copy_only=False) + np.repeat(offsets[q], counts)

    center = streaming_median(calibrated)
    first = None
    for q, counts, p in totals.fitted:
        table = with_targets(pq.read_table(p), np.repeat(offsets[q], counts), center, acfg.calibration.temperature)
        if run.simulated:
            table = table.append_column("label", pa.array([LABEL] * table.num_rows, pa.string()))
        writers.write("zelo", table)
        first = table if first is None else first
    return first
