"""Scoring whole queries' reranked heads with a checkpoint — in this process, or in a Ray Data
actor pool (``rerank.executor: ray``, GPU actors with ``rerank.gpus``).

Input rows are queries: ``query_id, query, doc_ids, docs`` (the documents of its reranked head,
in first-stage order). Output rows (:data:`SCORED`): the served score (the checkpoint's fusion
with BM25, which is per query, so a query is never split between batches) and the model's own
score per document. A query whose scoring raises comes back with its error in place of scores:
the driver files it in the stage's errors table, because an actor on another node cannot write
the driver's disk.

Example::

    >>> import pyarrow as pa
    >>> rows = pa.table({"query_id": ["q1"], "query": ["wing lift"], "doc_ids": [["d1", "d2"]],
    ...                  "docs": [["lift of a wing", "heat"]]})
    >>> class Constant:       # stands in for a checkpoint: scores every pair 0.5
    ...     def score(self, queries, docs, **kw):
    ...         import torch
    ...         return torch.full((len(docs),), 0.5)
    >>> out = QueryScorer(model=Constant())(rows)
    >>> out["served"].to_pylist(), out["error"].to_pylist()
    ([[0.5, 0.5]], [None])
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.faults import FaultInjector, describe_errors, isolate

__all__ = ["QueryScorer", "SCORED", "ScorerPool", "query_rows"]

SCORED = pa.schema([
    ("query_id", pa.string()), ("served", pa.list_(pa.float32())), ("model", pa.list_(pa.float32())),
    ("error_type", pa.string()), ("error", pa.string()), ("traceback", pa.string()),
])


def query_rows(qids: list[str], dids: list[str], qtext: dict, dtext: dict) -> pa.Table:
    """One row per query from pair lists sorted by query (its head in first-stage order)."""
    out_q, out_text, out_ids, out_docs = [], [], [], []
    start = 0
    while start < len(qids):
        end = start
        while end < len(qids) and qids[end] == qids[start]:
            end += 1
        out_q.append(qids[start])
        out_text.append(qtext[qids[start]])
        out_ids.append(dids[start:end])
        out_docs.append([dtext[d] for d in dids[start:end]])
        start = end
    return pa.table({"query_id": pa.array(out_q, pa.string()), "query": pa.array(out_text, pa.string()),
                     "doc_ids": pa.array(out_ids, pa.list_(pa.string())),
                     "docs": pa.array(out_docs, pa.list_(pa.string()))})


class _Collected:
    """The ``record`` side of an errors table, kept in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.ids: list = []
        self.errors: list[BaseException] = []

    def record(self, record_ids, errors) -> None:
        self.ids.extend(record_ids)
        self.errors.extend(errors)


class QueryScorer:
    """``map_batches`` callable (or a plain function object) over query rows → :data:`SCORED`."""

    def __init__(self, checkpoint: str | None = None, *, max_length: int = 256, batch_size: int = 64,
                 fusion: bool = True, node_copy: bool = False, device: str | None = None,
                 inject: list[str] | tuple = (), model=None, threads: int | None = None,
                 backend: str = "torch") -> None:
        """``node_copy``: ``checkpoint`` is an object-store copy, fetched to this node's disk once;
        ``device``: ``cuda`` in a GPU actor; ``model``: an already loaded reranker; ``threads``:
        torch's (or ONNX Runtime's) CPU threads (an actor's CPU share, so actors on one node do
        not oversubscribe it); ``backend``: torch, onnx or onnx-int8."""
        import torch

        if threads:
            torch.set_num_threads(threads)
        if node_copy:
            from zelo_ray.storage import local_copy

            checkpoint = local_copy(checkpoint)
        self.device = device or ("cuda" if torch.cuda.is_available() and model is None else "cpu")
        if model is None:
            from zelo_ray.scoring.onnx_reranker import load_scorer

            model = load_scorer(checkpoint, backend=backend, device=self.device, threads=threads or 0,
                                where="rerank.backend")
        self.model = model
        self.fused = None
        if fusion and checkpoint is not None:
            from zelo_ray.scoring.fusion import load_fusion

            self.fused = load_fusion(checkpoint)
        self.max_length, self.batch_size = max_length, batch_size
        self.injector = FaultInjector("rerank", inject)

    def _score(self, rows: pa.Table) -> pa.Table:
        import torch

        qs = rows["query"].to_pylist()
        docs = rows["docs"].to_pylist()
        sizes = [len(d) for d in docs]
        flat_q = [q for q, n in zip(qs, sizes) for _ in range(n)]
        flat_d = [d for ds in docs for d in ds]
        if flat_d:
            with torch.inference_mode():
                s = self.model.score(flat_q, flat_d, max_length=self.max_length, batch_size=self.batch_size,
                                     device=self.device).float().cpu().numpy()
        else:
            s = np.zeros(0, np.float32)
        bounds = np.cumsum([0] + sizes)
        served, model = [], []
        for k, (q, ds) in enumerate(zip(qs, docs)):
            p = s[bounds[k]:bounds[k + 1]]
            model.append(p.tolist())
            served.append((p if self.fused is None else self.fused.scores(q, ds, p)).tolist())
        n = rows.num_rows
        return pa.table({"query_id": rows["query_id"], "served": pa.array(served, pa.list_(pa.float32())),
                         "model": pa.array(model, pa.list_(pa.float32())),
                         "error_type": pa.nulls(n, pa.string()), "error": pa.nulls(n, pa.string()),
                         "traceback": pa.nulls(n, pa.string())}, schema=SCORED)

    def __call__(self, rows: pa.Table) -> pa.Table:
        failed = _Collected()
        ok = isolate(self._score, rows, lambda t: t["query_id"].to_pylist(), failed, self.injector)
        if not failed.ids:
            return ok
        n = len(failed.ids)
        types, messages, tracebacks = describe_errors(failed.errors)
        bad = pa.table({
            "query_id": pa.array([str(i) for i in failed.ids], pa.string()),
            "served": pa.nulls(n, pa.list_(pa.float32())), "model": pa.nulls(n, pa.list_(pa.float32())),
            "error_type": pa.array(types, pa.string()), "error": pa.array(messages, pa.string()),
            "traceback": pa.array(tracebacks, pa.string())}, schema=SCORED)
        return pa.concat_tables([ok, bad])


class ScorerPool:
    """Scores query rows in a Ray Data actor pool (``rerank.executor: ray``): ``rerank.actors``
    actors of ``rerank.cpus`` CPUs and ``rerank.gpus`` GPUs each; on several nodes the actors
    fetch the checkpoint from its copy under ``data.output_uri`` (:mod:`zelo_ray.reach`)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, rows: pa.Table, checkpoint: str, *, max_length: int, batch_size: int, fusion: bool = True,
            inject: list[str] | tuple = ()):
        """Yield :data:`SCORED` tables as the actors finish them."""
        import ray

        from zelo_ray.raysession import ensure_ray

        rcfg = self.cfg.rerank
        ensure_ray(self.cfg.ray)
        address, node_copy = checkpoint, "://" in checkpoint
        if not node_copy:
            from zelo_ray.reach import for_workers

            address = for_workers(self.cfg, checkpoint, what="rerank")
            node_copy = address != checkpoint
        sizes = pc.list_value_length(rows["doc_ids"]).to_numpy(zero_copy_only=False)
        per_query = max(1, int(sizes.mean())) if len(sizes) else 1
        # about 1,024 pairs per batch, but never fewer batches than actors
        queries_per_batch = max(1, min(max(batch_size, 1024) // per_query, -(-rows.num_rows // rcfg.actors)))
        # one block per batch of queries, so every actor gets work from the start
        blocks = [rows.slice(i, queries_per_batch) for i in range(0, rows.num_rows, queries_per_batch)]
        ds = ray.data.from_arrow(blocks).map_batches(
            QueryScorer, fn_constructor_kwargs=dict(
                checkpoint=address, node_copy=node_copy, max_length=max_length, batch_size=batch_size,
                fusion=fusion, inject=list(inject), device="cuda" if rcfg.gpus else "cpu", backend=rcfg.backend,
                threads=None if rcfg.gpus else max(1, int(rcfg.cpus))),
            batch_size=queries_per_batch, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=rcfg.actors), num_cpus=rcfg.cpus, num_gpus=rcfg.gpus or None)
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
