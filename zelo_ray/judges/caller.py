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

from zelo_ray.judges.base import CallBatch, ResultBatch
from zelo_ray.judges.factory import make_judge
from zelo_ray.judges.prompt import PROMPT_VERSION

__all__ = ["JudgeCaller", "TextTable", "VOTE_SCHEMA"]

VOTE_SCHEMA = pa.schema([
    ("pair_id", pa.int64()), ("query_id", pa.string()), ("kind", pa.string()), ("probe", pa.bool_()),
    ("judge", pa.string()), ("model", pa.string()), ("swapped", pa.bool_()),
    ("score", pa.float64()), ("error", pa.string()),
    ("input_tokens", pa.int64()), ("output_tokens", pa.int64()), ("cost", pa.float64()),
    ("latency_s", pa.float64()), ("attempts", pa.int64()), ("prompt_version", pa.string()),
    ("cache_key", pa.int64()),
])
"""``score`` is in the pair's A/B frame (negative: A better), null for a missing vote, whose
``error`` says why."""


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

    def __init__(self, judges: list, texts: TextTable | None = None, share: float = 1.0, *,
                 errors: str | None = None, inject: list[str] | tuple = ()) -> None:
        """``judges``: typed judge configs (:data:`zelo_ray.config.JudgeConfig`) of the kinds that
        run in a caller."""
        from zelo_ray.faults import ErrorLog, FaultInjector

        self.cfgs = {c.name: c for c in judges}
        self.texts = texts
        self.errors = ErrorLog(errors, "annotate") if errors else None
        self.injector = FaultInjector("annotate", inject)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="judge-loop", daemon=True)
        self._thread.start()
        self.judges = {name: make_judge(c, share) for name, c in self.cfgs.items()}

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
        results = await asyncio.gather(*(self.judges[name].judge_batch(calls[name]) for name in names))
        score = np.full(n, np.nan)
        error: list[str | None] = [None] * n
        tin, tout = np.zeros(n, np.int64), np.zeros(n, np.int64)
        lat, att = np.zeros(n), np.zeros(n, np.int64)
        cost = np.zeros(n)
        model = np.empty(n, dtype=object)
        for name, res in zip(names, results):
            idx = groups[name]
            cfg = self.cfgs[name]
            res: ResultBatch
            # Back to the pair's A/B frame: a judge shown (B, A) scored B as "first".
            score[idx] = np.where(swapped[idx], -res.score, res.score)
            # Only missing votes carry an error; the loop runs over those alone (hot path).
            for k in np.flatnonzero(np.isnan(res.score)):
                error[idx[k]] = res.error[k] or "no score returned"
            tin[idx], tout[idx] = res.input_tokens, res.output_tokens
            lat[idx], att[idx] = res.latency_s, res.attempts
            cost[idx] = cfg.cost(res.input_tokens, res.output_tokens)
            model[idx] = cfg.model
        return pa.Table.from_arrays([
            batch["pair_id"], batch["query_id"], batch["kind"], batch["probe"], batch["judge"],
            pa.array(model, pa.string()), batch["swapped"],
            pa.array(score, pa.float64(), mask=np.isnan(score)), pa.array(error, pa.string()),
            pa.array(tin), pa.array(tout), pa.array(cost), pa.array(lat), pa.array(att),
            pa.array([PROMPT_VERSION] * n, pa.string()), batch["cache_key"],
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
