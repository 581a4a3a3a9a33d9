"""The judging step's engine: hand every call of a run to the judges (a Ray Data actor pool of
judge callers, ray.data.llm for vLLM judges, or callers in this process), store the answers as
they arrive, and report progress."""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.annotate.sizing import caller_count
from zelo_ray.config import ZeloConfig
from zelo_ray.faults import ErrorLog
from zelo_ray.judges.caller import JudgeCaller, TextTable
from zelo_ray.judges.factory import preflight
from zelo_ray.judges.store import VoteStore
from zelo_ray.ticker import Ticker

__all__ = ["Progress", "callers_log_answers", "execute"]


class Progress:
    """Pairs done, calls done, votes/s, ETA, failures, tokens and cost so far — the first line after
    ``first_s``, then one every ``every_s`` (:class:`zelo_ray.ticker.Ticker`).

    A pair is done when none of its calls is still waiting; with ``pending_pairs`` (the pair id
    of every call asked in this run) and ``n_pairs`` (all pairs of the run, including those
    answered by an earlier run) the line counts them too. ``final``: also log when the last call
    is in (off when the caller prints its own summary).
    """

    def __init__(self, total: int, log_fn=print, every_s: float = 30.0, *, first_s: float = 10.0,
                 pending_pairs: np.ndarray | None = None, n_pairs: int | None = None, final: bool = True) -> None:
        self.total, self.log_fn, self.final = total, log_fn, final
        self.ticker = Ticker(total, first_s=first_s, every_s=every_s)
        self.done = self.failed = self.tokens_in = self.tokens_out = 0
        self.cost = 0.0
        self.t0 = time.perf_counter()
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
        self.done += votes.num_rows
        self.failed += votes["score"].null_count
        self.tokens_in += int(pc.sum(votes["input_tokens"]).as_py() or 0)
        self.tokens_out += int(pc.sum(votes["output_tokens"]).as_py() or 0)
        self.cost += float(pc.sum(votes["cost"]).as_py() or 0.0)
        if self._waiting is not None and votes.num_rows:
            idx = np.searchsorted(self._pair_ids, votes["pair_id"].to_numpy())
            np.subtract.at(self._waiting, np.clip(idx, 0, len(self._pair_ids) - 1), 1)
        if self.ticker.due(self.done) and (self.final or self.done < self.total):
            self.log_fn(self.line())

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.t0, 1e-9)

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        pairs = self.pairs_done()
        head = f"pairs {pairs:,}/{self.n_pairs:,} · " if pairs is not None else ""
        return (f"      {head}calls {self.done:,}/{self.total:,} ({pct:.1f}%) · {self.rate():,.1f} votes/s · "
                f"{self.ticker.eta(self.done)} · {self.failed:,} failed · tokens in {self.tokens_in:,} out {self.tokens_out:,} · "
                f"cost ${self.cost:.4f}")


def _blocks(todo: pa.Table, rows: int) -> list[pa.Table]:
    return [todo.slice(i, rows) for i in range(0, todo.num_rows, rows)]


def _spill(todo: pa.Table, folder, rows: int) -> list[str]:
    """``todo`` as one Parquet file per block of ``rows`` calls."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, block in enumerate(_blocks(todo, rows)):
        paths.append(str(folder / f"part-{i:06d}.parquet"))
        pq.write_table(block, paths[-1])
    return paths


def _read_spill(batch: pa.Table) -> pa.Table:
    # One block per file: Ray Data's own Parquet reader merges small files into one block, and
    # an actor works through one block's batches one after another, which would leave the pool a
    # single task (no concurrency, nothing to grow on).
    return pa.concat_tables([pq.read_table(p) for p in batch["path"].to_pylist()])


def callers_log_answers(cfg: ZeloConfig) -> bool:
    """Whether judge callers append answers to the store themselves, each as it arrives
    (``annotate.answer_log``): with ``auto``, when they run in this process or on this machine's
    single-node Ray cluster or when every node sees the work directory (``data.shared_workdir``),
    where the store directory is theirs to write."""
    mode = cfg.annotate.answer_log
    if mode != "auto":
        return mode == "caller"
    if cfg.annotate.executor == "local" or cfg.data.shared_workdir:
        return True
    from zelo_ray.raysession import ensure_ray
    from zelo_ray.reach import alive_nodes

    ensure_ray(cfg.ray)
    return alive_nodes() <= 1


class _Sink:
    """Where answers go: the store (unless the callers logged them) and the progress line — from
    the caller pool and the vLLM judges at once, so one lock keeps them whole."""

    def __init__(self, store: VoteStore, progress: Progress) -> None:
        self.store, self.progress = store, progress
        self._lock = threading.Lock()

    def __call__(self, votes: pa.Table, *, stored: bool = False) -> None:
        with self._lock:
            if not stored:
                self.store.append(votes)
            self.progress.update(votes)


def execute(todo: pa.Table, cfg: ZeloConfig, store: VoteStore, texts: TextTable | None,
            progress: Progress, errors: ErrorLog | None = None) -> None:
    """Ask every call in ``todo``; answers reach ``store`` as they come back — written by the
    callers themselves, one by one (:func:`callers_log_answers`), or appended here per batch. A
    call that cannot be asked goes to ``errors`` (and is not stored, so a re-run asks it again).
    vLLM judges (``ray.data.llm``) and the hosted-judge callers run at the same time."""
    if todo.num_rows == 0:
        return
    sink = _Sink(store, progress)
    slm = [j for j in cfg.annotate.judges if j.runner == "vllm"]
    if not slm:
        _execute_callers(todo, cfg, store, texts, sink, errors)
        return
    is_slm = pc.is_in(todo["judge"], value_set=pa.array([j.name for j in slm]))
    slm_todo, todo = todo.filter(is_slm), todo.filter(pc.invert(is_slm))
    if todo.num_rows == 0:
        _execute_vllm(slm_todo, cfg, slm, texts, sink)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="vllm-judges") as pool:
        vllm = pool.submit(_execute_vllm, slm_todo, cfg, slm, texts, sink)
        try:
            _execute_callers(todo, cfg, store, texts, sink, errors)
        finally:
            # the vLLM votes are paid-for compute: they are stored even when the callers failed
            vllm.result()


def _pool_size(cfg: ZeloConfig, judges: list) -> tuple[int, int]:
    """(fewest, most) caller actors."""
    acfg = cfg.annotate
    least = acfg.callers or caller_count(judges)
    if acfg.max_callers is None:
        return least, least
    return min(least, acfg.max_callers), acfg.max_callers


def _execute_callers(todo: pa.Table, cfg: ZeloConfig, store: VoteStore, texts: TextTable | None,
                     sink: _Sink, errors: ErrorLog | None) -> None:
    judges = [j for j in cfg.annotate.judges if j.runner == "caller"]
    logged = callers_log_answers(cfg)
    isolation = dict(errors=str(errors.path) if errors else None, inject=list(cfg.errors.inject),
                     log_dir=str(store.path) if logged else None)
    if cfg.annotate.executor == "local":
        _execute_local(todo, cfg, judges, texts, sink, isolation, logged)
    else:
        _execute_ray(todo, cfg, judges, store, texts, sink, isolation, logged)


def _execute_local(todo: pa.Table, cfg: ZeloConfig, judges: list, texts: TextTable | None,
                   sink: _Sink, isolation: dict, logged: bool) -> None:
    """One caller in this process, ``batches_in_flight`` batches on threads."""
    acfg = cfg.annotate
    caller = JudgeCaller(judges, texts, **isolation)
    try:
        with ThreadPoolExecutor(acfg.batches_in_flight) as pool:
            pending = set()
            for block in _blocks(todo, acfg.batch_size):
                pending.add(pool.submit(caller, block))
                if len(pending) >= 2 * acfg.batches_in_flight:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        sink(f.result(), stored=logged)
            for f in pending:
                sink(f.result(), stored=logged)
    finally:
        caller.close()


def _execute_ray(todo: pa.Table, cfg: ZeloConfig, judges: list, store: VoteStore,
                 texts: TextTable | None, sink: _Sink, isolation: dict, logged: bool) -> None:
    """A Ray Data pool of caller actors (growing between the pool bounds) fed with the calls."""
    import ray
    from ray.data import DataContext

    from zelo_ray.judges.shared_limits import start_limits
    from zelo_ray.raysession import ensure_ray

    acfg = cfg.annotate
    ensure_ray(cfg.ray)
    ctx = DataContext.get_current()
    saved = ctx.target_max_block_size
    # One output block per batch, so votes reach the store as they are answered.
    ctx.target_max_block_size = max(1 << 16, acfg.batch_size * 512)
    least, most = _pool_size(cfg, judges)
    parallel = most * acfg.batches_in_flight
    block_rows = int(np.clip(todo.num_rows // (parallel * 4) or 1, acfg.batch_size, acfg.batch_size * 64))
    # one book of every endpoint's limits for the whole pool, so they hold at any pool size; a
    # pool of one keeps them in its caller (a slot from the book costs an actor call: ~1.3 ms of
    # the caller's CPU per request, docs/benchmarks.md §7)
    limits = start_limits(judges) if most > 1 else None
    spill = store.path.parent / f".todo-{os.getpid()}" if logged else None
    try:
        ds = _calls_dataset(todo, spill, block_rows)
        size = dict(size=least, max_tasks_in_flight_per_actor=acfg.batches_in_flight)
        if least < most:
            # Ray Data grows a pool when its actors hold more tasks than they run at once (by
            # 1.75×), so a growing pool queues one more batch per running one
            size = dict(min_size=least, max_size=most, max_tasks_in_flight_per_actor=2 * acfg.batches_in_flight)
        ds = ds.map_batches(
            JudgeCaller, fn_constructor_kwargs=dict(judges=judges, texts=texts, limits=limits, **isolation),
            batch_size=acfg.batch_size, batch_format="pyarrow",
            # Several batches run at once in one actor (threads feeding one event loop), so a
            # slow call at the end of one batch does not idle the endpoint's other slots.
            compute=ray.data.ActorPoolStrategy(
                **size, max_concurrent_calls_per_actor=acfg.batches_in_flight, enable_true_multi_threading=True),
            num_cpus=acfg.caller_cpus)
        for votes in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            sink(votes, stored=logged)
    finally:
        ctx.target_max_block_size = saved
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
        if limits is not None:
            _log_limits(limits, least, most, sink.progress.log_fn)
            ray.kill(limits)


def _calls_dataset(todo: pa.Table, spill: Path | None, block_rows: int):
    """The calls as a Ray dataset: in blocks from this process, or (with ``spill``) from files."""
    import ray

    if spill is None:
        return ray.data.from_arrow(_blocks(todo, block_rows))
    # the calls reach the callers from a file, not through this process's share of the
    # object store, and only a few columns per answer come back: the driver's memory is
    # the bucket it works on, whatever the run's size
    paths = _spill(todo, spill, block_rows)
    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths)).map_batches(
        _read_spill, batch_size=1, batch_format="pyarrow", num_cpus=0.1,
        # a fraction of a CPU each would let Ray start a worker process per file at once
        # (the raylet's "startup concurrency" warning); two readers keep the callers fed
        compute=ray.data.TaskPoolStrategy(size=min(2, len(paths))))


def _log_limits(limits, least: int, most: int, log_fn) -> None:
    """One line on how the pool used the shared limits (callers seen, peak slots per endpoint)."""
    import ray

    try:
        report = ray.get(limits.report.remote(), timeout=10)
    except Exception:  # noqa: BLE001 - a summary line is not worth failing a paid-for run
        return
    pool = f"{least}" if least == most else f"{least}–{most}"
    peaks = ", ".join(f"{name} peak {e['peak']} in flight" + (f", {e['reclaimed']} slots reclaimed" if e["reclaimed"] else "")
                      for name, e in report["endpoints"].items())
    log_fn(f"      judge callers: {report['clients']} used (pool {pool}) under one set of endpoint limits: {peaks}")


def _execute_vllm(todo: pa.Table, cfg: ZeloConfig, judges: list, texts: TextTable | None, sink: _Sink) -> None:
    for judge in judges:
        preflight(judge)
    from zelo_ray.judges.vllm_pairwise import vllm_votes
    from zelo_ray.raysession import ensure_ray

    ensure_ray(cfg.ray)
    for judge in judges:
        rows = todo.filter(pc.equal(todo["judge"], judge.name))
        if rows.num_rows == 0:
            continue
        for votes in vllm_votes(rows, judge, texts, batch_size=cfg.annotate.batch_size):
            sink(votes)
