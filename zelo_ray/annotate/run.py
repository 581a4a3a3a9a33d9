"""`zelo annotate`: candidates → pairs → judge calls (streamed through an actor pool, stored as
they arrive) → Elo → cross-query calibration → targets, with a run report.

:func:`run_annotate` is five steps in order, each a function below it: **pairs** (the graph of
each query, plus cross-query pairs), **tasks** (one call per pair and judge, minus calls already
answered), **judge** (ask the rest, store answers as they come), **fit** (Elo, calibration,
targets), **report**.

Safe to kill at any moment and re-run: answers already stored are never asked again (cache
keys, :mod:`zelo_ray.judges.store`), and the Elo stage is recomputed from the store.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.annotate import diagnostics
from zelo_ray.annotate.execute import Progress, execute
from zelo_ray.annotate.pairs import build_cross_pairs, build_pairs, extra_pairs, query_bounds, select_nodes
from zelo_ray.annotate.qrels import qrels_grades, qrels_relevance
from zelo_ray.annotate.scores import EloStage, outcome_matrix, run_elo_stage, task_scores
from zelo_ray.annotate.tasks import TextHashes, build_tasks, calls_table
from zelo_ray.config import ZeloConfig
from zelo_ray.core.simulate import LABEL
from zelo_ray.faults import ErrorLog, check_failures
from zelo_ray.judges.caller import TextTable
from zelo_ray.judges.factory import preflight
from zelo_ray.judges.keys import text_hashes
from zelo_ray.judges.prompt import PROMPT_VERSION
from zelo_ray.judges.store import VoteStore
from zelo_ray.layout import layout

__all__ = ["run_annotate", "Progress", "qrels_grades", "qrels_relevance", "execute"]


def run_annotate(cfg: ZeloConfig, *, log_fn=print, qrels: pa.Table | None = None,
                 candidates: str | None = None, collection=None, queries: list[str] | None = None) -> dict:
    """Run (or resume) the judging stage. ``qrels``/``candidates``/``collection`` default to the
    run directory's; the simulated judge is driven by ``qrels``. ``queries`` limits the stage to
    those query ids (e.g. the training queries)."""
    out = layout(cfg).annotate
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with _timed(timings, "pairs_s"):
        run = _inputs(cfg, qrels, candidates, collection, queries)
        graph = pairs_step(cfg, run, out, log_fn)
    with _timed(timings, "tasks_s"):
        calls = tasks_step(cfg, run, graph, out, log_fn)
    with _timed(timings, "judge_s"):
        judged = judge_step(cfg, calls, graph, out, log_fn)
    with _timed(timings, "elo_s"):
        fitted = fit_step(cfg, run, graph, calls, out)
    return report_step(cfg, run, graph, calls, judged, fitted, out, timings)


@dataclass
class _Inputs:
    candidates: str
    collection: object
    qrels: pa.Table | None
    queries: list[str] | None
    simulated: bool
    reads_texts: bool


@dataclass
class _Graph:
    nodes: pa.Table
    pairs: pa.Table
    cross: pa.Table
    n_queries: int


@dataclass
class _Calls:
    tasks: pa.Table
    todo: pa.Table
    reused: int
    texts: TextTable | None
    store: VoteStore


@dataclass
class _Judged:
    progress: Progress
    failures: dict


@dataclass
class _Fitted:
    votes: pa.Table
    ts: pa.Table
    stage: EloStage
    table: pa.Table


@contextmanager
def _timed(timings: dict, key: str):
    t0 = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - t0, 2)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


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
    return _Inputs(cand, collection, qrels, queries, simulated, reads_texts)


def pairs_step(cfg: ZeloConfig, run: _Inputs, out: Path, log_fn) -> _Graph:
    """Each query's top-n candidates → its pair graph (+ pairs the refinement pass added) and
    the cross-query pairs that calibrate queries against each other."""
    acfg = cfg.annotate
    nodes = select_nodes(run.candidates, acfg.top_n, queries=run.queries, max_queries=acfg.max_queries)
    pairs = build_pairs(nodes, strategy=cfg.graph.strategy, k=cfg.graph.k, seed=acfg.seed)
    refine = out / "refine_pairs.parquet"
    if refine.exists():  # pairs added by the refinement pass (zelo_ray.workflows.refine)
        r = pq.read_table(refine)
        r = r.filter(pc.is_in(r["query_id"], value_set=pc.unique(nodes["query_id"])))
        extra = extra_pairs(nodes, r["query_id"].to_pylist(), r["doc_a"].to_pylist(), r["doc_b"].to_pylist())
        extra = extra.filter(pc.invert(pc.is_in(extra["pair_id"], value_set=pairs["pair_id"])))
        pairs = pa.concat_tables([pairs, extra]).sort_by([("query_id", "ascending")])
    cross = build_cross_pairs(nodes, k=acfg.calibration.k, seed=acfg.seed)
    _write_atomic(pairs, out / "pairs.parquet")
    _write_atomic(cross, out / "cross_pairs.parquet")
    n_queries = len(query_bounds(nodes)[1])
    log_fn(f"      {n_queries:,} queries × top-{acfg.top_n}: {pairs.num_rows:,} pairs "
           f"({cfg.graph.strategy}, k={cfg.graph.k}) + {cross.num_rows:,} cross-query pairs")
    return _Graph(nodes, pairs, cross, n_queries)


def tasks_step(cfg: ZeloConfig, run: _Inputs, graph: _Graph, out: Path, log_fn) -> _Calls:
    """One call per (pair, judge) with its A/B order and cache key; the calls still to ask are
    those the vote store has no answer for, each distinct request once."""
    acfg = cfg.annotate
    texts = hashes = None
    if run.reads_texts:
        texts, hashes = _texts(run.collection, graph.nodes)
    tasks = build_tasks(calls_table(graph.pairs, graph.cross), acfg.judges, seed=acfg.seed,
                        swap_probe=acfg.swap_probe, text_hashes=hashes,
                        relevance=qrels_relevance(run.qrels) if run.simulated else None)
    store = VoteStore(out / "votes", flush_rows=acfg.flush_rows, flush_s=acfg.flush_s)
    store.seal_logs()  # answers logged by the callers of a run that was killed
    skip = store.answered_keys() if acfg.retry_failed else store.asked_keys()
    keys = tasks["cache_key"].to_numpy()
    todo_mask = ~np.isin(keys, skip)
    _, first = np.unique(keys, return_index=True)
    unique = np.zeros(len(keys), bool)
    unique[first] = True
    todo = tasks.filter(pa.array(todo_mask & unique))
    reused = int((~todo_mask).sum())
    log_fn(f"      {tasks.num_rows:,} judge calls ({len(acfg.judges)} judges); {reused:,} answered in "
           f"{store.path} are reused; asking {todo.num_rows:,} via the {acfg.executor} executor")
    return _Calls(tasks, todo, reused, texts, store)


def judge_step(cfg: ZeloConfig, calls: _Calls, graph: _Graph, out: Path, log_fn) -> _Judged:
    """Ask every call still to ask; answers reach the store as they arrive. A call that cannot be
    asked lands in ``errors.parquet`` (a re-run asks it again)."""
    progress = Progress(calls.todo.num_rows, log_fn, pending_pairs=calls.todo["pair_id"].to_numpy(),
                        n_pairs=graph.pairs.num_rows + graph.cross.num_rows)
    errors = ErrorLog(out / "errors.parquet", "annotate")
    errors.reset()
    try:
        execute(calls.todo, cfg, calls.store, calls.texts, progress, errors)
    finally:
        calls.store.flush()
    failed = errors.finish()
    failures = check_failures(failed, calls.todo.num_rows, cfg.errors.max_fraction, stage="annotate",
                              path=errors.path, what="judge calls")
    if failed.num_rows:
        log_fn(f"      {failed.num_rows:,} judge calls could not be asked (listed in {errors.path}; a re-run "
               f"asks them again): {failures['most_common']}")
    return _Judged(progress, failures)


def fit_step(cfg: ZeloConfig, run: _Inputs, graph: _Graph, calls: _Calls, out: Path) -> _Fitted:
    """Stored votes → soft outcomes → Elo per query → calibration → targets (``zelo.parquet``),
    and the ensemble's outcome per pair (``pair_outcomes.parquet``: what the pairwise SLM is
    distilled from)."""
    acfg = cfg.annotate
    votes = calls.store.read()
    ts = task_scores(calls.tasks, votes)
    stage = run_elo_stage(graph.nodes, graph.pairs, graph.cross, ts, [j.name for j in acfg.judges],
                          clamp=acfg.clamp, min_votes=acfg.min_votes, elo_cfg=cfg.elo,
                          cal_cfg=acfg.calibration)
    table = stage.table
    if run.simulated:
        table = table.append_column("label", pa.array([LABEL] * table.num_rows, pa.string()))
    _write_atomic(table, out / "zelo.parquet")
    w = np.where(stage.valid_within, stage.w_within, np.nan)
    _write_atomic(graph.pairs.select(["query_id", "pair_id", "doc_a", "doc_b"]).append_column(
        "p_a", pa.array(w, pa.float64(), mask=~stage.valid_within)), out / "pair_outcomes.parquet")
    return _Fitted(votes, ts, stage, table)


def report_step(cfg: ZeloConfig, run: _Inputs, graph: _Graph, calls: _Calls, judged: _Judged,
                fitted: _Fitted, out: Path, timings: dict) -> dict:
    """Diagnostics (failures, agreement, position bias, held-out link fit, spend) → ``report.json``."""
    acfg = cfg.annotate
    names = [j.name for j in acfg.judges]
    stage, ts, pairs = fitted.stage, fitted.ts, graph.pairs
    t0 = time.perf_counter()
    keep = stage.valid_within
    diag = {
        "failures": diagnostics.failures(ts, names),
        "agreement": diagnostics.agreement(outcome_matrix(ts, pairs["pair_id"], names, "within"), names),
        "position_bias": diagnostics.position_bias(ts, names),
        "decisive_by_grade": diagnostics.decisive_by_grade(fitted.votes, pairs, qrels_grades(run.qrels))
        if run.qrels is not None else None,
        "heldout_likelihood": diagnostics.heldout_models(
            stage.edge_i[keep], stage.edge_j[keep], stage.w_within[keep], pairs["pair_id"].to_numpy()[keep],
            stage.group, graph.nodes.num_rows, fraction=acfg.heldout, prior=cfg.elo.prior)
        if acfg.heldout and keep.any() else None,
    }
    timings["diagnostics_s"] = round(time.perf_counter() - t0, 2)
    spend = diagnostics.spend(calls.store.read_all(), names)
    report = {
        "label": LABEL if run.simulated else None,
        "prompt_version": PROMPT_VERSION,
        "queries": graph.n_queries, "pairs": pairs.num_rows, "cross_pairs": graph.cross.num_rows,
        "judge_calls": calls.tasks.num_rows, "asked_this_run": calls.todo.num_rows, "reused": calls.reused,
        "votes_per_s": round(judged.progress.rate(), 1),
        "missing_votes": int(ts["score"].null_count),
        "failed": judged.failures,
        "elo": stage.within,
        "calibration": {**stage.calibration,
                        **diagnostics.calibration_effect(fitted.table, run.qrels, acfg.seed)},
        "judges": {n: {"spend": spend[n], **diag["failures"][n], "position_bias": diag["position_bias"][n]}
                   for n in names},
        "total_cost": round(sum(s["cost"] for s in spend.values()), 6),
        "agreement": diag["agreement"], "heldout_likelihood": diag["heldout_likelihood"],
        "decisive_by_grade": diag["decisive_by_grade"],
        "timings": timings,
        "files": {"pairs": str(out / "pairs.parquet"), "cross_pairs": str(out / "cross_pairs.parquet"),
                  "votes": str(calls.store.path), "zelo": str(out / "zelo.parquet"),
                  "pair_outcomes": str(out / "pair_outcomes.parquet")},
    }
    (out / "report.json.tmp").write_text(json.dumps(report, indent=2, default=str))
    os.replace(out / "report.json.tmp", out / "report.json")
    return report


def _texts(col, nodes: pa.Table) -> tuple[TextTable, TextHashes]:
    """The texts LLM judges read (title + text, as shown) and their hashes (cache keys)."""
    need_docs = pc.unique(nodes["doc_id"])
    corpus = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"],
                           filters=[("doc_id", "in", need_docs.to_pylist())])
    shown = [f"{t}\n{x}" if t else x for t, x in zip(corpus["title"].to_pylist(), corpus["text"].to_pylist())]
    queries = col.queries()
    qtext = queries["text"].to_pylist()
    texts = TextTable(queries=dict(zip(queries["query_id"].to_pylist(), qtext)),
                      docs=dict(zip(corpus["doc_id"].to_pylist(), shown)))
    hashes = TextHashes(query_ids=queries["query_id"].combine_chunks(), query_hash=text_hashes(qtext),
                        doc_ids=corpus["doc_id"].combine_chunks(), doc_hash=text_hashes(shown))
    return texts, hashes
