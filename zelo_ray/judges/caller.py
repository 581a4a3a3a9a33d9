"""The judge caller: turns a batch of task rows into vote rows, many calls in flight.

One instance lives in each Ray Data actor of the judging pool (or in the driver for the
``local`` executor). It owns an asyncio event loop on a background thread, so several batches
handed to it at once (``batches_in_flight``) share one set of endpoint limiters and one HTTP
connection pool per judge.

Task rows (built by :mod:`zelo_ray.annotate.tasks`): ``pair_id, kind, probe, query_id,
query_b, doc_a, doc_b, judge, swapped, cache_key`` and, for simulated judges, ``rel_a, rel_b``.
Vote rows: :data:`VOTE_SCHEMA`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from zelo_ray.judges.base import VOTE_SCHEMA, CallBatch, ResultBatch
from zelo_ray.judges.factory import make_judge
from zelo_ray.judges.prompt import PROMPT_VERSION

__all__ = ["JudgeCaller", "PROGRESS_COLUMNS", "TextTable", "VOTE_SCHEMA", "shown_doc"]

PROGRESS_COLUMNS = ["pair_id", "score", "input_tokens", "output_tokens", "cost"]
"""What a caller that logs its answers itself returns per answer."""


def shown_doc(title: str | None, text: str) -> str:
    """A document as every judge reads it: its title on the first line, then its text."""
    return f"{title}\n{text}" if title else text


@dataclass
class TextTable:
    """Query and document texts the LLM judges need, by id."""

    queries: dict[str, str]
    docs: dict[str, str]

    def query(self, qid: str) -> str:
        return self.queries[qid]

    def doc(self, did: str) -> str:
        return self.docs[did]


def record_ids(batch: pa.Table) -> list[str]:
    """The annotate stage's record ids: ``<pair_id>/<judge>`` (``/probe`` for position probes)."""
    probe = batch["probe"].to_pylist() if "probe" in batch.column_names else [False] * batch.num_rows
    return [f"{p}/{j}/probe" if pr else f"{p}/{j}"
            for p, j, pr in zip(batch["pair_id"].to_pylist(), batch["judge"].to_pylist(), probe)]


class JudgeCaller:
    """``errors``: the stage's errors table; a call that cannot even be asked (its texts are
    missing, ``errors.inject`` names it) is listed there and left out of the batch, so it is not
    stored and a re-run asks it again. A call that is asked and fails is a missing vote."""

    def __init__(self, judges: list, texts: TextTable | None = None, *, limits=None,
                 errors: str | None = None, inject: list[str] | tuple = (), log_dir: str | None = None) -> None:
        """``judges``: typed judge configs (:data:`zelo_ray.config.JudgeConfig`) of the kinds that
        run in a caller. ``limits``: the run's :class:`~zelo_ray.judges.shared_limits.LimitBook`
        actor when several callers share the endpoints (None: this caller keeps the limits).
        ``log_dir``: append every answer to a log there as it arrives
        (:mod:`zelo_ray.judges.answer_log`), so a kill loses only the calls in flight."""
        from zelo_ray.faults import ErrorLog, FaultInjector

        self.cfgs = {c.name: c for c in judges}
        self.texts = texts
        self.errors = ErrorLog(errors, "annotate") if errors else None
        self.injector = FaultInjector("annotate", inject)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="judge-loop", daemon=True)
        self._thread.start()
        self.judges = {name: make_judge(c, self._limiter(limits, name)) for name, c in self.cfgs.items()}
        self.log = None
        if log_dir is not None:
            from zelo_ray.judges.answer_log import AnswerLog

            self.log = AnswerLog(log_dir)

    @staticmethod
    def _limiter(book, name: str):
        if book is None:
            return None
        import os
        import socket

        from zelo_ray.judges.shared_limits import SharedEndpointLimiter

        return SharedEndpointLimiter(book, name, f"{socket.gethostname()}:{os.getpid()}")

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.errors is not None:
            from zelo_ray.faults import isolate

            # isolation runs on the cheap checks only: bisecting the judge calls themselves
            # would pay again for calls already answered
            batch = isolate(self._askable, batch, record_ids, self.errors, self.injector)
        if batch.num_rows == 0:
            return VOTE_SCHEMA.empty_table()
        return asyncio.run_coroutine_threadsafe(self._run(batch), self._loop).result()

    def _askable(self, batch: pa.Table) -> pa.Table:
        """``batch`` when every call in it can be asked; raises on the first that cannot."""
        judges = set(batch["judge"].to_pylist())
        unknown = judges - set(self.judges)
        if unknown:
            raise ValueError(f"task rows name judges not in the config: {sorted(unknown)}")
        if self.texts is not None and any(not self.cfgs[j].simulated for j in judges):
            for q, qb, a, b in zip(*(batch[c].to_pylist() for c in ("query_id", "query_b", "doc_a", "doc_b"))):
                for what, key, table in (("query", q, self.texts.queries), ("query", qb, self.texts.queries),
                                         ("document", a, self.texts.docs), ("document", b, self.texts.docs)):
                    if key is not None and key not in table:
                        raise KeyError(f"no text for {what} id {key!r}")
        return batch

    def close(self) -> None:
        async def _close():
            for j in self.judges.values():
                await j.aclose()
        try:
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self.log is not None:
                self.log.close()

    async def _run(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        judge_col = np.asarray(batch["judge"].to_pylist(), dtype=object)
        swapped = batch["swapped"].to_numpy(zero_copy_only=False)
        key = batch["cache_key"].to_numpy()
        has_rel = "rel_a" in batch.column_names
        rel_a = batch["rel_a"].to_numpy(zero_copy_only=False) if has_rel else None
        rel_b = batch["rel_b"].to_numpy(zero_copy_only=False) if has_rel else None
        names = list(dict.fromkeys(judge_col.tolist()))
        groups = {name: np.flatnonzero(judge_col == name) for name in names}
        unknown = [g for g in names if g not in self.judges]
        if unknown:
            raise ValueError(f"task rows name judges not in the config: {unknown}")
        calls = {}
        for name, idx in groups.items():
            first_rel = second_rel = None
            if has_rel:
                first_rel = np.where(swapped[idx], rel_b[idx], rel_a[idx])
                second_rel = np.where(swapped[idx], rel_a[idx], rel_b[idx])
            calls[name] = CallBatch(key=key[idx], texts=self._texts_fn(batch, idx, swapped),
                                    first_rel=first_rel, second_rel=second_rel)
        logged = np.zeros(n, bool)
        callbacks = {name: self._logger(batch, name, groups[name], swapped, logged) for name in names}
        results = await asyncio.gather(*(self.judges[name].judge_batch(calls[name], callbacks[name])
                                         for name in names))
        parts = [self._votes(batch, groups[name], name, res, np.arange(len(groups[name])), swapped)
                 for name, res in zip(names, results)]
        order = np.argsort(np.concatenate([groups[name] for name in names]), kind="stable")
        votes = pa.concat_tables(parts).take(pa.array(order))
        if self.log is not None:
            # answers the judges did not hand over one by one (a simulated judge answers a whole
            # batch at once) are logged now, before the batch is reported done; the driver then
            # needs only what its progress line counts
            self.log.write(votes.filter(pa.array(~logged)))
            return votes.select(PROGRESS_COLUMNS)
        return votes

    def _logger(self, batch: pa.Table, name: str, idx: np.ndarray, swapped: np.ndarray, logged: np.ndarray):
        """``on_answer`` for one judge's calls in ``batch``: log each answer as it arrives."""
        if self.log is None:
            return None

        def on_answer(i: int, res: ResultBatch) -> None:
            self.log.write(self._votes(batch, idx[[i]], name, res, np.array([i]), swapped))
            logged[idx[i]] = True
        return on_answer

    def _votes(self, batch: pa.Table, rows: np.ndarray, name: str, res: ResultBatch, sub: np.ndarray,
               swapped: np.ndarray) -> pa.Table:
        """Vote rows for ``batch``'s rows ``rows``, answered by judge ``name`` at ``res[sub]``."""
        cfg = self.cfgs[name]
        raw = res.score[sub]
        # Back to the pair's A/B frame: a judge shown (B, A) scored B as "first".
        score = np.where(swapped[rows], -raw, raw)
        error: list[str | None] = [None] * len(rows)
        for k in np.flatnonzero(np.isnan(raw)):  # only missing votes carry an error (hot path)
            error[k] = res.error[int(sub[k])] or "no score returned"
        tin, tout = res.input_tokens[sub], res.output_tokens[sub]
        take = pa.array(rows)
        return pa.Table.from_arrays([
            batch["pair_id"].take(take), batch["query_id"].take(take), batch["kind"].take(take),
            batch["probe"].take(take), batch["judge"].take(take),
            pa.array([cfg.model] * len(rows), pa.string()), batch["swapped"].take(take),
            pa.array(score, pa.float64(), mask=np.isnan(score)), pa.array(error, pa.string()),
            pa.array(tin, pa.int64()), pa.array(tout, pa.int64()),
            pa.array(np.asarray(cfg.cost(tin, tout), np.float64), pa.float64()),
            pa.array(res.latency_s[sub], pa.float64()), pa.array(res.attempts[sub], pa.int64()),
            pa.array([PROMPT_VERSION] * len(rows), pa.string()), batch["cache_key"].take(take),
        ], schema=VOTE_SCHEMA)

    def _texts_fn(self, batch: pa.Table, idx: np.ndarray, swapped: np.ndarray):
        texts = self.texts
        if texts is None:
            def missing(i: int):
                raise ValueError("this judge needs texts but the caller was built without them")
            return missing
        cols = {c: batch[c] for c in ("query_id", "query_b", "doc_a", "doc_b")}

        def resolve(i: int):
            r = int(idx[i])
            q, qb = cols["query_id"][r].as_py(), cols["query_b"][r].as_py()
            a, b = cols["doc_a"][r].as_py(), cols["doc_b"][r].as_py()
            qa_text = texts.query(q)
            qb_text = texts.query(qb) if qb is not None else None
            if swapped[r]:
                # Cross-query pairs swap whole (query, document) items, not only documents.
                if qb_text is not None:
                    return qb_text, texts.doc(b), texts.doc(a), qa_text
                return qa_text, texts.doc(b), texts.doc(a), None
            return qa_text, texts.doc(a), texts.doc(b), qb_text
        return resolve
