"""Sentence embeddings from a model folder's ONNX export (``index.backend: onnx | onnx-int8``).

Tokenised as sentence-transformers does (cut at the folder's ``max_seq_length``), texts sorted
by length so a batch pads little, pooled and normalised inside the graph
(:mod:`zelo_ray.runtime.export`): the fp32 graph gives sentence-transformers' vectors to 1e-4.

    >>> from zelo_ray.retrieval.embedder import resolve_model
    >>> emb = OnnxEmbedding(resolve_model("default"), threads=2)      # doctest: +SKIP
    >>> emb.encode(["wing in a slipstream"], 64).shape                # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zelo_ray.runtime.export import exported
from zelo_ray.runtime.session import OnnxSession
from zelo_ray.runtime.tokens import TextTokenizer

__all__ = ["OnnxEmbedding"]


def _max_seq_length(folder: Path, tokenizer) -> int:
    """sentence-transformers' limit: its config's ``max_seq_length``, else the tokenizer's."""
    st = folder / "sentence_bert_config.json"
    if st.exists():
        n = json.loads(st.read_text()).get("max_seq_length")
        if n:
            return int(n)
    return int(min(tokenizer.model_max_length, 512))


class OnnxEmbedding:
    """``encode(texts, batch_size) → (n, dim)`` unit vectors, in input order."""

    def __init__(self, folder: str, *, int8: bool = False, threads: int = 0, max_seq_length: int | None = None,
                 device: str = "cpu"):
        path = Path(folder)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"index.backend=onnx needs a local model folder; {folder!r} is not one "
                                    "(give its path, or use index.backend=torch)")
        self.tokenizer = TextTokenizer(path)
        self.max_length = max_seq_length or _max_seq_length(path, self.tokenizer)
        self.session = OnnxSession(exported(path, head="embedding", int8=int8), threads=threads, device=device)
        self.dim = int(json.loads((path / "config.json").read_text())["hidden_size"])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        ids = self.tokenizer(list(texts), max_length=self.max_length)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        pad = self.tokenizer.pad_id
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            n = max(len(ids[i]) for i in rows)
            arr = np.full((len(rows), n), pad, np.int64)
            mask = np.zeros((len(rows), n), np.int64)
            for j, i in enumerate(rows):
                arr[j, :len(ids[i])] = ids[i]
                mask[j, :len(ids[i])] = 1
            out[rows] = self.session.run({"input_ids": arr, "attention_mask": mask,
                                          "token_type_ids": np.zeros_like(arr)})
        return out
