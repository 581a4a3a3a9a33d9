"""A checkpoint's scorer run by ONNX Runtime, behind the interface the PyTorch
:class:`~zelo_ray.scoring.models.Reranker` gives scoring (``score``; ``__call__`` and ``embed``
for the serving engine), and :func:`load_scorer`, the one place a backend name becomes a scorer.

Example::

    >>> import tempfile
    >>> from zelo_ray.scoring.models import tiny_encoder
    >>> path = tiny_encoder(tempfile.mkdtemp())
    >>> onnx, ref = load_scorer(path, backend="onnx"), load_scorer(path)
    >>> q, d = ["what is lift"] * 2, ["lift is a force", "a recipe"]
    >>> bool((onnx.score(q, d) - ref.score(q, d)).abs().max() < 1e-4)
    True
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from zelo_ray.runtime.backend import check_backend, is_onnx
from zelo_ray.runtime.export import exported
from zelo_ray.runtime.session import OnnxSession
from zelo_ray.scoring.kinds import CARD, detect_kind, resolve_base
from zelo_ray.scoring.models import DOC_ENCODER, DOC_MAP, map_document_vectors

__all__ = ["OnnxReranker", "load_scorer"]


def load_scorer(path: str, kind: str = "auto", *, backend: str = "torch", device: str = "cpu",
                dtype: torch.dtype | None = None, threads: int = 0, where: str = "backend"):
    """A checkpoint ready to score on ``backend`` (``torch``: a :class:`Reranker` on ``device``);
    ``where`` names the setting in the error a backend that cannot run the model raises."""
    from zelo_ray.scoring.models import load_reranker

    path = resolve_base(path)
    kind = detect_kind(path) if kind == "auto" else kind
    check_backend(backend, kind, where=where)
    if not is_onnx(backend):
        return load_reranker(path, kind, dtype=dtype).to(device).eval()
    return OnnxReranker(path, kind, int8=backend == "onnx-int8", device=device, threads=threads)


class OnnxReranker:
    """Scores like :class:`~zelo_ray.scoring.models.Reranker` from the folder's ONNX export:
    a cross-encoder's logit head, or a bi-encoder's pooled vectors with its learned
    ``scale · cos + bias`` — one encoder for both sides, or ("query" towers) the query encoder
    and the frozen document encoder (exported on its own) with the learned map on its vectors,
    which may be seeded with the index's vectors as the PyTorch model's are."""

    def __init__(self, path: str, kind: str, *, int8: bool = False, device: str = "cpu", threads: int = 0):
        from transformers import AutoConfig, AutoTokenizer

        card = json.loads((Path(path) / CARD).read_text()) if (Path(path) / CARD).exists() else {}
        self.kind, self.path = kind, path
        self.backend = "onnx-int8" if int8 else "onnx"
        self.precision = "int8" if int8 else "float32"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.config = AutoConfig.from_pretrained(path)
        head = "logit" if kind == "cross_encoder" else "embedding"
        self.session = OnnxSession(exported(path, head=head, int8=int8), threads=threads, device=device)
        self.doc_session, self.doc_map, self._doc_cache = None, None, {}
        if kind == "bi_encoder" and card.get("towers") == "query":
            from safetensors.torch import load_file

            self.doc_session = OnnxSession(exported(Path(path) / DOC_ENCODER, head="embedding", int8=int8),
                                           threads=threads, device=device)
            self.doc_map = load_file(str(Path(path) / DOC_MAP))["weight"].float()
        head_params = card.get("head", {})
        self.scale = torch.tensor(float(head_params.get("scale", 20.0)))
        self.bias = torch.tensor(float(head_params.get("bias", -10.0)))

    # the torch module calls scoring makes on a model, answered for a session
    def eval(self) -> "OnnxReranker":
        return self

    def to(self, device) -> "OnnxReranker":
        return self

    def _run(self, arrays: dict, session=None) -> torch.Tensor:
        host = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()}
        return torch.from_numpy(np.asarray((session or self.session).run(host), np.float32))

    def __call__(self, enc: dict) -> torch.Tensor:
        """Logits of a cross-encoder's tokenised pairs."""
        return self._run(enc)

    def embed(self, input_ids, attention_mask, *, session=None) -> torch.Tensor:
        return self._run({"input_ids": input_ids, "attention_mask": attention_mask,
                          "token_type_ids": torch.zeros_like(input_ids)}, session)

    def embed_documents(self, input_ids, attention_mask) -> torch.Tensor:
        """The document tower's vectors, before :meth:`map_documents`."""
        return self.embed(input_ids, attention_mask, session=self.doc_session)

    def map_documents(self, vectors: torch.Tensor) -> torch.Tensor:
        return map_document_vectors(vectors, self.doc_map)

    def seed_document_vectors(self, texts: list[str], vectors) -> int:
        """As :meth:`Reranker.seed_document_vectors`: the frozen tower's vectors of ``texts``."""
        if self.doc_session is None:
            return 0
        self._doc_cache.update(zip(texts, torch.as_tensor(np.asarray(vectors, np.float32))))
        return len(texts)

    def _encode(self, texts: list[str], max_length: int, batch_size: int, session=None) -> torch.Tensor:
        out = []
        for s in range(0, len(texts), batch_size):
            t = self.tokenizer(texts[s:s + batch_size], truncation=True, max_length=max_length,
                               padding=True, return_tensors="np")
            out.append(self._run(dict(t), session))
        return torch.cat(out) if out else torch.empty(0)

    @property
    def towers(self) -> str:
        return "query" if self.doc_session is not None else "both"

    def document_vectors(self, docs: list[str], *, max_length: int, batch_size: int = 64, **_) -> torch.Tensor:
        """Distinct documents' tower vectors: seeded ones from the cache, the rest encoded."""
        todo = [d for d in dict.fromkeys(docs) if d not in self._doc_cache]
        fresh = dict(zip(todo, self._encode(todo, max_length, batch_size, self.doc_session)))
        if self.doc_session is not None:
            self._doc_cache.update(fresh)
        return torch.stack([fresh[d] if d in fresh else self._doc_cache[d] for d in docs])

    def score(self, queries: list[str], docs: list[str], *, max_length: int = 256, batch_size: int = 64,
              device=None) -> torch.Tensor:
        """Relevance in [0, 1] (sigmoid of the logit), in input order."""
        if not docs:
            return torch.empty(0)
        if self.kind == "bi_encoder":
            uq = list(dict.fromkeys(queries))
            qv = self._encode(uq, max_length, batch_size)
            qi = {q: i for i, q in enumerate(uq)}
            q = qv[torch.tensor([qi[x] for x in queries])]
            d = self.map_documents(self.document_vectors(docs, max_length=max_length, batch_size=batch_size))
            return torch.sigmoid(self.scale * (q * d).sum(-1) + self.bias)
        out = []
        for s in range(0, len(docs), batch_size):
            enc = self.tokenizer(queries[s:s + batch_size], docs[s:s + batch_size], truncation="longest_first",
                                 max_length=max_length, padding=True, return_tensors="np")
            out.append(torch.sigmoid(self._run(dict(enc))))
        return torch.cat(out)
