"""`zelo annotate`: candidates → pairs → judge calls (streamed through an actor pool, stored as
they arrive) → Elo → cross-query calibration → targets, with a run report.

Safe to kill at any moment and re-run: answers already stored are never asked again (cache
keys, :mod:`zelo_ray.judges.store`), and the Elo stage is recomputed from the store.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.stats import kendalltau

from zelo_ray.annotate.sizing import caller_count
from zelo_ray.annotate import diagnostics
from zelo_ray.annotate.pairs import build_cross_pairs, build_pairs, extra_pairs, query_bounds, select_nodes
from zelo_ray.annotate.scores import outcome_matrix, run_elo_stage, task_scores
from zelo_ray.annotate.tasks import TextHashes, build_tasks, calls_table
from zelo_ray.config import ZeloConfig
from zelo_ray.faults import ErrorLog, check_failures
from zelo_ray.judges.caller import JudgeCaller, TextTable
from zelo_ray.judges.keys import combine, text_hashes, uniforms
from zelo_ray.judges.openai_judge import JudgeSetupError, read_api_key
from zelo_ray.judges.prompt import PROMPT_VERSION
from zelo_ray.judges.store import VoteStore
from zelo_ray.core.simulate import LABEL, latent_from_grades
from zelo_ray.layout import layout

__all__ = ["run_annotate", "Progress", "qrels_grades", "qrels_relevance", "execute"]

log = logging.getLogger(__name__)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def qrels_grades(qrels: pa.Table):
    """``grades(query_ids, doc_ids)``: the qrels grade of each pair, 0 where unjudged."""
    q = qrels.select(["query_id", "doc_id", "relevance"])

    def grades(query_ids: pa.Array, doc_ids: pa.Array) -> np.ndarray:
        t = pa.table({"_i": np.arange(len(query_ids)), "query_id": query_ids, "doc_id": doc_ids})
        j = t.join(q, keys=["query_id", "doc_id"], join_type="left outer").sort_by("_i")
        return j["relevance"].fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
    return grades


def qrels_relevance(qrels: pa.Table):
    """Hidden relevance for the simulated judge: the qrels grade (0 where unjudged) mapped onto the
    judge noise model's latent scale (:func:`zelo_ray.core.simulate.latent_from_grades`), with a fixed
    within-grade spread drawn from a hash of (query id, document id)."""
    grades = qrels_grades(qrels)
    max_grade = float(pc.max(qrels["relevance"]).as_py() or 0.0)

    def relevance(query_ids: pa.Array, doc_ids: pa.Array) -> np.ndarray:
        key = combine(text_hashes(pc.cast(query_ids, pa.string()).to_pylist()),
                      text_hashes(pc.cast(doc_ids, pa.string()).to_pylist()))
        z = np.sqrt(-2.0 * np.log(uniforms(key, 11))) * np.cos(2.0 * np.pi * uniforms(key, 12))
        return latent_from_grades(grades(query_ids, doc_ids), max_grade, z)
    return relevance


class Progress:
    """Pairs done, calls done, votes/s, failures, tokens and cost so far — logged every ``every_s``.

    A pair is done when none of its calls is still waiting; with ``pending_pairs`` (the pair id
    of every call asked in this run) and ``n_pairs`` (all pairs of the run, including those
    answered by an earlier run) the line counts them too.
    """

    def __init__(self, total: int, log_fn=print, every_s: float = 5.0, *,
                 pending_pairs: np.ndarray | None = None, n_pairs: int | None = None) -> None:
        self.total, self.log_fn, self.every_s = total, log_fn, every_s
        self.done = self.failed = self.tokens_in = self.tokens_out = 0
        self.cost = 0.0
        self.t0 = self._last = time.perf_counter()
        self.n_pairs = n_pairs
        self._pair_ids = self._waiting = None
        if pending_pairs is not None:
            self._pair_ids, inverse = np.unique(pending_pairs, return_inverse=True)
            self._waiting = np.bincount(inverse, minlength=len(self._pair_ids))

    def pairs_done(self) -> int | None:
        if self.n_pairs is None or self._waiting is None:
            return None
        return self.n_pairs - int((self._waiting > 0).sum())

    def update(self, votes: pa.Table) -> None:
        now = time.perf_counter()
        self.done += votes.num_rows
        self.failed += votes["score"].null_count
        self.tokens_in += int(pc.sum(votes["input_tokens"]).as_py() or 0)
        self.tokens_out += int(pc.sum(votes["output_tokens"]).as_py() or 0)
        self.cost += float(pc.sum(votes["cost"]).as_py() or 0.0)
        if self._waiting is not None and votes.num_rows:
            idx = np.searchsorted(self._pair_ids, votes["pair_id"].to_numpy())
            np.subtract.at(self._waiting, np.clip(idx, 0, len(self._pair_ids) - 1), 1)
        if now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            self.log_fn(self.line())

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.t0, 1e-9)

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        pairs = self.pairs_done()
        head = f"pairs {pairs:,}/{self.n_pairs:,} · " if pairs is not None else ""
        return (f"      {head}calls {self.done:,}/{self.total:,} ({pct:.1f}%) · {self.rate():,.1f} votes/s · "
                f"{self.failed:,} failed · tokens in {self.tokens_in:,} out {self.tokens_out:,} · "
                f"cost ${self.cost:.4f}")


def _blocks(todo: pa.Table, rows: int) -> list[pa.Table]:
    return [todo.slice(i, rows) for i in range(0, todo.num_rows, rows)]


def execute(todo: pa.Table, cfg: ZeloConfig, store: VoteStore, texts: TextTable | None,
            progress: Progress, errors: ErrorLog | None = None) -> None:
    """Ask every call in ``todo``; append answers to ``store`` as they come back. A call that
    cannot be asked goes to ``errors`` (and is not stored, so a re-run asks it again)."""
    acfg = cfg.annotate
    isolation = dict(errors=str(errors.path) if errors else None, inject=list(cfg.errors.inject))
    if todo.num_rows == 0:
        return
    slm = [j for j in acfg.judges if j.kind == "vllm_pairwise"]
    if slm:
        # vLLM judges run as their own Ray Data job (ray.data.llm); the rest go to the callers.
        names = pa.array([j.name for j in slm])
        is_slm = pc.is_in(todo["judge"], value_set=names)
        _execute_vllm(todo.filter(is_slm), cfg, slm, store, texts, progress)
        todo = todo.filter(pc.invert(is_slm))
        if todo.num_rows == 0:
            return
    judges = [j.model_dump() for j in acfg.judges if j.kind != "vllm_pairwise"]
    if acfg.executor == "local":
        caller = JudgeCaller(judges, texts, share=1.0, **isolation)
        try:
            with ThreadPoolExecutor(acfg.batches_in_flight) as pool:
                pending = set()
                for block in _blocks(todo, acfg.batch_size):
                    pending.add(pool.submit(caller, block))
                    if len(pending) >= 2 * acfg.batches_in_flight:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            votes = f.result()
                            store.append(votes)
                            progress.update(votes)
                for f in pending:
                    votes = f.result()
                    store.append(votes)
                    progress.update(votes)
        finally:
            caller.close()
        return

    import ray
    from ray.data import DataContext

    from zelo_ray.raysession import ensure_ray

    ensure_ray(cfg.ray)
    ctx = DataContext.get_current()
    saved = ctx.target_max_block_size
    # One output block per batch, so votes reach the store as they are answered.
    ctx.target_max_block_size = max(1 << 16, acfg.batch_size * 512)
    callers = acfg.callers or caller_count(cfg.annotate.judges)
    parallel = callers * acfg.batches_in_flight
    block_rows = int(np.clip(todo.num_rows // (parallel * 4) or 1, acfg.batch_size, acfg.batch_size * 64))
    try:
        ds = ray.data.from_arrow(_blocks(todo, block_rows))
        ds = ds.map_batches(
            JudgeCaller, fn_constructor_kwargs=dict(judges=judges, texts=texts, share=1.0 / callers, **isolation),
            batch_size=acfg.batch_size, batch_format="pyarrow",
            # Several batches run at once in one actor (threads feeding one event loop), so a
            # slow call at the end of one batch does not idle the endpoint's other slots.
            compute=ray.data.ActorPoolStrategy(
                size=callers, max_tasks_in_flight_per_actor=acfg.batches_in_flight,
                max_concurrent_calls_per_actor=acfg.batches_in_flight, enable_true_multi_threading=True),
            num_cpus=acfg.caller_cpus)
        for votes in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            store.append(votes)
            progress.update(votes)
    finally:
        ctx.target_max_block_size = saved


def _execute_vllm(todo: pa.Table, cfg: ZeloConfig, judges: list, store: VoteStore,
                  texts: TextTable | None, progress: Progress) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise JudgeSetupError(
            f"judge {judges[0].name!r} (kind vllm_pairwise) needs vLLM: install the official wheel on "
            "GPU nodes, or run `bash scripts/setup-vllm.sh` and use .venv-vllm on CPU") from None
    from zelo_ray.judges.vllm_pairwise import vllm_votes
    from zelo_ray.raysession import ensure_ray

    ensure_ray(cfg.ray)
    for judge in judges:
        rows = todo.filter(pc.equal(todo["judge"], judge.name))
        if rows.num_rows == 0:
            continue
        for votes in vllm_votes(rows, judge, texts, batch_size=cfg.annotate.batch_size):
            store.append(votes)
            progress.update(votes)


def _texts(col, nodes: pa.Table) -> tuple[TextTable, TextHashes]:
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


def _calibration_effect(table: pa.Table, qrels: pa.Table | None, seed: int) -> dict:
    elo = table["elo"].to_numpy(zero_copy_only=False)
    cal = table["calibrated"].to_numpy(zero_copy_only=False)
    qid = np.asarray(table["query_id"].to_pylist(), dtype=object)
    ok = np.isfinite(elo) & np.isfinite(cal)
    out = {}
    if ok.sum() < 3:
        return out
    out["kendall_tau_raw_vs_calibrated"] = round(float(kendalltau(elo[ok], cal[ok]).statistic), 4)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(ok)
    a, b = rng.choice(idx, 200_000), rng.choice(idx, 200_000)
    cross = qid[a] != qid[b]
    if cross.any():
        flip = np.sign(elo[a] - elo[b]) != np.sign(cal[a] - cal[b])
        out["cross_query_pairs_reordered"] = round(float(flip[cross].mean()), 4)
    if qrels is not None:
        gain = qrels_grades(qrels)(table["query_id"], table["doc_id"])
        out["kendall_tau_vs_qrels_gain_pooled"] = {
            "raw_elo": round(float(kendalltau(elo[ok], gain[ok]).statistic), 4),
            "calibrated": round(float(kendalltau(cal[ok], gain[ok]).statistic), 4)}
    return out


def run_annotate(cfg: ZeloConfig, *, log_fn=print, qrels: pa.Table | None = None,
                 candidates: str | None = None, collection=None, queries: list[str] | None = None) -> dict:
    """Run (or resume) the judging stage. ``qrels``/``candidates``/``collection`` default to the
    run directory's; the simulated judge is driven by ``qrels``. ``queries`` limits the stage to
    those query ids (e.g. the training queries)."""
    from zelo_ray.data import open_collection

    acfg = cfg.annotate
    out = layout(cfg).annotate
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    simulated = any(j.kind == "simulated" for j in acfg.judges)
    llm = [j for j in acfg.judges if j.kind != "simulated"]
    for j in llm:  # fail before any work if a key is missing (the message names the variable)
        if j.kind == "openai":
            read_api_key(j.name, j.api_key_env)
    cand = candidates or str(layout(cfg).candidates)
    if not Path(cand).exists():
        raise FileNotFoundError(f"{cand}: no candidates; run `zelo retrieve` first (or `zelo demo`)")
    if collection is None and (llm or qrels is None):
        collection = open_collection(layout(cfg).data)
    split = acfg.query_split
    if split is not None:
        in_split = set(collection.qrels(split))
        queries = sorted(in_split if queries is None else in_split & set(queries))
    if qrels is None and simulated:
        qsplit = split or cfg.data.split
        qrels = pq.read_table(collection.qrels_path(qsplit))
    nodes = select_nodes(cand, acfg.top_n, queries=queries, max_queries=acfg.max_queries)
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
    timings["pairs_s"] = round(time.perf_counter() - t0, 2)
    n_queries = len(query_bounds(nodes)[1])
    log_fn(f"      {n_queries:,} queries × top-{acfg.top_n}: {pairs.num_rows:,} pairs "
           f"({cfg.graph.strategy}, k={cfg.graph.k}) + {cross.num_rows:,} cross-query pairs")

    t0 = time.perf_counter()
    texts = hashes = None
    if llm:
        texts, hashes = _texts(collection, nodes)
    tasks = build_tasks(calls_table(pairs, cross), acfg.judges, seed=acfg.seed, swap_probe=acfg.swap_probe,
                        text_hashes=hashes, relevance=qrels_relevance(qrels) if simulated else None)
    store = VoteStore(out / "votes", flush_rows=acfg.flush_rows, flush_s=acfg.flush_s)
    skip = store.answered_keys() if acfg.retry_failed else store.asked_keys()
    keys = tasks["cache_key"].to_numpy()
    todo_mask = ~np.isin(keys, skip)
    # Identical requests (same texts, same order) are asked once.
    _, first = np.unique(keys, return_index=True)
    unique = np.zeros(len(keys), bool)
    unique[first] = True
    todo = tasks.filter(pa.array(todo_mask & unique))
    timings["tasks_s"] = round(time.perf_counter() - t0, 2)
    reused = int((~todo_mask).sum())
    log_fn(f"      {tasks.num_rows:,} judge calls ({len(acfg.judges)} judges); {reused:,} answered in "
           f"{store.path} are reused; asking {todo.num_rows:,} via the {acfg.executor} executor")

    t0 = time.perf_counter()
    progress = Progress(todo.num_rows, log_fn, pending_pairs=todo["pair_id"].to_numpy(),
                        n_pairs=pairs.num_rows + cross.num_rows)
    errors = ErrorLog(out / "errors.parquet", "annotate")
    errors.reset()
    try:
        execute(todo, cfg, store, texts, progress, errors)
    finally:
        store.flush()
    failed = errors.finish()
    failures = check_failures(failed, todo.num_rows, cfg.errors.max_fraction, stage="annotate",
                              path=errors.path, what="judge calls")
    if failed.num_rows:
        log_fn(f"      {failed.num_rows:,} judge calls could not be asked (listed in {errors.path}; a re-run "
               f"asks them again): {failures['most_common']}")
    timings["judge_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    votes = store.read()
    ts = task_scores(tasks, votes)
    names = [j.name for j in acfg.judges]
    stage = run_elo_stage(nodes, pairs, cross, ts, names, clamp=acfg.clamp, min_votes=acfg.min_votes,
                          elo_cfg=cfg.elo, cal_cfg=acfg.calibration)
    table = stage.table
    if simulated:
        table = table.append_column("label", pa.array([LABEL] * table.num_rows, pa.string()))
    _write_atomic(table, out / "zelo.parquet")
    # the ensemble's soft outcome per judged pair: what the pairwise SLM is distilled from
    w = np.where(stage.valid_within, stage.w_within, np.nan)
    _write_atomic(pairs.select(["query_id", "pair_id", "doc_a", "doc_b"]).append_column(
        "p_a", pa.array(w, pa.float64(), mask=~stage.valid_within)), out / "pair_outcomes.parquet")
    timings["elo_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    keep = stage.valid_within
    diag = {
        "failures": diagnostics.failures(ts, names),
        "agreement": diagnostics.agreement(outcome_matrix(ts, pairs["pair_id"], names, "within"), names),
        "position_bias": diagnostics.position_bias(ts, names),
        "decisive_by_grade": diagnostics.decisive_by_grade(votes, pairs, qrels_grades(qrels))
        if qrels is not None else None,
        "heldout_likelihood": diagnostics.heldout_models(
            stage.edge_i[keep], stage.edge_j[keep], stage.w_within[keep], pairs["pair_id"].to_numpy()[keep],
            stage.group,
            nodes.num_rows, fraction=acfg.heldout, prior=cfg.elo.prior) if acfg.heldout and keep.any() else None,
    }
    timings["diagnostics_s"] = round(time.perf_counter() - t0, 2)
    spend = diagnostics.spend(store.read_all(), names)
    report = {
        "label": LABEL if simulated else None,
        "prompt_version": PROMPT_VERSION,
        "queries": n_queries, "pairs": pairs.num_rows, "cross_pairs": cross.num_rows,
        "judge_calls": tasks.num_rows, "asked_this_run": todo.num_rows, "reused": reused,
        "votes_per_s": round(progress.rate(), 1),
        "missing_votes": int(ts["score"].null_count),
        "failed": failures,
        "elo": stage.within, "calibration": {**stage.calibration,
                                             **_calibration_effect(table, qrels, acfg.seed)},
        "judges": {n: {"spend": spend[n], **diag["failures"][n], "position_bias": diag["position_bias"][n]}
                   for n in names},
        "total_cost": round(sum(s["cost"] for s in spend.values()), 6),
        "agreement": diag["agreement"], "heldout_likelihood": diag["heldout_likelihood"],
        "decisive_by_grade": diag["decisive_by_grade"],
        "timings": timings,
        "files": {"pairs": str(out / "pairs.parquet"), "cross_pairs": str(out / "cross_pairs.parquet"),
                  "votes": str(store.path), "zelo": str(out / "zelo.parquet"),
                  "pair_outcomes": str(out / "pair_outcomes.parquet")},
    }
    (out / "report.json.tmp").write_text(json.dumps(report, indent=2, default=str))
    os.replace(out / "report.json.tmp", out / "report.json")
    return report
