"""Query-tower training of a bi-encoder (``train.towers: query``).

The query encoder learns; documents keep the base model's vectors — the ones the dense index
already holds — under a learned linear map (:class:`~zelo_ray.scoring.models.Reranker`'s
``doc_map``). A training row is one query with *all* its judged candidates and their vectors,
so a step encodes only queries (a few tokens each) and compares each with every document of the
batch: its own candidates against softmax(elo / τ), the other queries' as negatives
(``losses/inbatch_listwise.py``). On 2 cores that is ~0.5 s for 32 queries × 100 candidates,
where encoding the same 3,200 documents at 256 tokens would take minutes; so thousands of
queries are seen many times within a developer session (docs/training.md has the measurements).

Example::

    >>> import numpy as np
    >>> from zelo_ray.train.query_tower import batch_matrix
    >>> batch = {"doc_ids": [["a", "b"], ["b", "c"]], "elo": [[1.0, 0.0], [2.0, -1.0]],
    ...          "targets": [[0.7, 0.5], [0.9, 0.2]],
    ...          "doc_vectors": [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.6, 0.8]]]}
    >>> vectors, elo, targets = batch_matrix(batch)
    >>> vectors.shape, elo.tolist()
    (torch.Size([3, 2]), [[1.0, 0.0, nan], [nan, 2.0, -1.0]])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from zelo_ray.faults import ErrorLog, FaultInjector

__all__ = ["VECTOR_SCHEMA", "attach_validation_vectors", "batch_matrix", "effective_config", "resolve_towers",
           "write_query_examples"]

VECTOR_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("doc_ids", pa.list_(pa.string())),
    ("targets", pa.list_(pa.float32())), ("elo", pa.list_(pa.float32())),
    ("doc_vectors", pa.list_(pa.list_(pa.float32()))),
])


def resolve_towers(tcfg) -> str:
    """'query' or 'both' for ``train.towers`` (auto: query for a bi-encoder)."""
    from zelo_ray.scoring.kinds import detect_kind, resolve_base

    kind = tcfg.kind if tcfg.kind != "auto" else detect_kind(resolve_base(tcfg.base))
    if tcfg.towers == "query" and kind != "bi_encoder":
        raise ValueError(f"train.towers=query needs a bi_encoder; {tcfg.base!r} is a {kind} "
                         "(set train.kind=bi_encoder, or train.towers=both)")
    return "query" if kind == "bi_encoder" and tcfg.towers in ("auto", "query") else "both"


def effective_config(tcfg):
    """The TrainConfig the shared trainer runs: for query towers, train.query_tower's settings in
    the fields the trainer reads (one query per row, ``queries_per_step`` rows per step)."""
    if resolve_towers(tcfg) != "query":
        return tcfg.model_copy(update={"towers": "both"})
    q = tcfg.query_tower
    return tcfg.model_copy(update={
        "towers": "query", "kind": "bi_encoder", "loss": q.loss, "lr": q.lr, "epochs": q.epochs,
        "max_length": q.max_length, "candidates_per_query": q.candidates_per_query,
        "group_size": 1, "batch_size": q.queries_per_step})


def batch_matrix(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of query rows → (the batch's distinct documents' vectors (m, dim), each query's Elo
    on its own candidates and NaN elsewhere (n, m), the targets likewise)."""
    col: dict[str, int] = {}
    vecs, cells = [], []
    for g, (ids, es, ts, vs) in enumerate(zip(batch["doc_ids"], batch["elo"], batch["targets"],
                                               batch["doc_vectors"])):
        for d, e, t, v in zip(ids, es, ts, vs):
            if d not in col:
                col[d] = len(col)
                vecs.append(np.asarray(v, np.float32))
            cells.append((g, col[d], float(e), float(t)))
    n = len(batch["doc_ids"])
    elo = torch.full((n, len(col)), float("nan"))
    targets = torch.full((n, len(col)), float("nan"))
    for g, c, e, t in cells:
        elo[g, c], targets[g, c] = e, t
    return torch.from_numpy(np.stack(vecs)), elo, targets


def write_query_examples(zelo: pa.Table, col, path: str | Path, model, *, max_length: int,
                         candidates_per_query: int | None, seed: int, target: str = "target",
                         errors: ErrorLog | None = None, injector: FaultInjector | None = None,
                         chunk_queries: int = 500) -> Path:
    """One row per training query (:data:`VECTOR_SCHEMA`): its judged candidates with targets,
    calibrated Elo and document-tower vectors, rows in a seeded order; written chunk by chunk."""
    from zelo_ray.train.examples import build_groups
    from zelo_ray.data.texts import doc_texts, query_texts

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    queries = query_texts(col)
    order = np.random.default_rng(seed).permutation(sorted(set(zelo["query_id"].to_pylist())))
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, VECTOR_SCHEMA) as out:
        for s in range(0, len(order), chunk_queries):
            ids = pa.array(order[s:s + chunk_queries].tolist(), pa.string())
            chunk = zelo.filter(pc.is_in(zelo["query_id"], value_set=ids))
            docs = doc_texts(col, chunk["doc_id"].to_pylist())
            groups = build_groups(chunk, queries, docs, group_size=1 << 30, candidates_per_query=candidates_per_query,
                                  seed=seed + s, target=target, errors=errors, injector=injector)
            flat = [d for ds in groups["docs"].to_pylist() for d in ds]
            v = model.document_vectors(flat, max_length=max_length).numpy() if flat else np.zeros((0, 1), np.float32)
            sizes = np.cumsum([0] + [len(x) for x in groups["docs"].to_pylist()])
            out.write_table(pa.table({
                "query_id": groups["query_id"], "query": groups["query"], "doc_ids": groups["doc_ids"],
                "targets": groups["targets"], "elo": groups["elo"],
                "doc_vectors": pa.array([v[a:b].tolist() for a, b in zip(sizes[:-1], sizes[1:])],
                                        VECTOR_SCHEMA.field("doc_vectors").type)}, schema=VECTOR_SCHEMA))
    tmp.replace(path)
    return path


def attach_validation_vectors(validation: dict, model, *, max_length: int) -> dict:
    """The validation set with each candidate's document-tower vector, so the worker that
    validates every checkpoint never encodes a document."""
    flat = [d for ds in validation["docs"] for d in ds]
    v = model.document_vectors(flat, max_length=max_length).numpy() if flat else np.zeros((0, 1), np.float32)
    sizes = np.cumsum([0] + [len(ds) for ds in validation["docs"]])
    return {**validation, "doc_vectors": [v[a:b] for a, b in zip(sizes[:-1], sizes[1:])]}
