"""A checkpoint with a frozen document tower scores with the vectors the index already holds.

:func:`scoring_model` loads a checkpoint for scoring a run's documents (the index's vectors
seeded when they are its document tower's); :func:`retrieve_with` uses a trained query tower as
the first-stage retriever over those vectors (the tuned embedding model, nothing re-embedded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout

__all__ = ["retrieve_with", "scoring_model", "seed_from_index"]


def seed_from_index(model, dense_uri, corpus_path, *, max_length: int, log=print) -> int:
    """Give ``model``'s frozen document tower the index's vectors when they are its own (checked
    by encoding a few documents: same model, same token budget); returns how many were taken."""
    from zelo_ray.retrieval.docvectors import index_vectors

    if getattr(model, "towers", "both") != "query":
        return 0
    try:
        _, texts, vectors = index_vectors(dense_uri, corpus_path)
    except Exception as exc:  # noqa: BLE001 - no usable index: the tower encodes documents itself
        log(f"      document vectors: the index's are not usable ({exc}); encoding documents instead")
        return 0
    probe = [i for i in range(min(len(texts), 64)) if texts[i].strip()][:3]
    if probe:
        mine = model.document_vectors([texts[i] for i in probe], max_length=max_length).numpy()
        if mine.shape != vectors[probe].shape or np.abs(mine - vectors[probe]).max() > 1e-3:
            log("      document vectors: the index was built with another model or token budget than the "
                "document tower; encoding documents instead")
            return 0
    return model.seed_document_vectors(texts, vectors)


def scoring_model(cfg: ZeloConfig, col, checkpoint: str | Path, *, log=print, seeded: list | None = None):
    """A checkpoint loaded for scoring; a frozen document tower gets the index's vectors
    (``seeded``, if given, receives how many), on ``rerank.backend``."""
    from zelo_ray.scoring.onnx_reranker import load_scorer
    from zelo_ray.scoring.rerank import checkpoint_max_length

    model = load_scorer(str(checkpoint), backend=cfg.rerank.backend, where="rerank.backend")
    n = seed_from_index(model, layout(cfg).dense, col.corpus_path,
                        max_length=checkpoint_max_length(str(checkpoint), cfg.rerank.max_length), log=log)
    if seeded is not None:
        seeded.append(n)
    return model


def retrieve_with(model, dense_uri, corpus_path, queries: dict[str, str], bm25: dict[str, list[str]], *,
                  depth: int, rrf_c: float = 60.0, max_length: int = 256) -> dict[str, dict[str, list[str]]]:
    """First-stage retrieval with a trained query tower (the tuned embedding model): exact search
    over the index's vectors through the learned map — nothing is re-embedded, since the document
    tower is the index's model — and its RRF with the BM25 ranking, as the retrieve stage fuses.
    Returns ``{"dense": runs, "hybrid": runs}`` for ``queries`` (id → text)."""
    from zelo_ray.retrieval.docvectors import index_vectors
    from zelo_ray.retrieval.fusion import rrf

    ids, _, vectors = index_vectors(dense_uri, corpus_path)
    qids = list(queries)
    with torch.no_grad():
        d = model.map_documents(torch.from_numpy(vectors)).float()
        q = model.score_queries([queries[x] for x in qids], max_length=max_length)
    top = torch.topk(q @ d.T, min(depth, len(ids)), dim=1).indices.numpy()
    row = {x: i for i, x in enumerate(ids)}
    dense, hybrid = {}, {}
    for x, rows in zip(qids, top):
        dense[x] = [ids[i] for i in rows]
        fused = rrf([rows, np.array([row[doc] for doc in bm25.get(x, []) if doc in row], np.int64)], c=rrf_c)
        hybrid[x] = [ids[i] for i in fused.ids[:depth]]
    return {"dense": dense, "hybrid": hybrid}
