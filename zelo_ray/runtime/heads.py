"""The torch modules :mod:`zelo_ray.runtime.export` traces: a model folder's one-logit head, or
its pooled, L2-normalised sentence vectors (what sentence-transformers and
:meth:`~zelo_ray.scoring.models.Reranker.embed` compute). Imported only to export, so running a
cached graph never imports torch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["head_module"]


def head_module(folder: Path, head: str, pooling: str = "mean") -> nn.Module:
    """The fp32 module of ``head`` ('logit' or 'embedding') over the folder's weights."""
    import transformers
    from transformers import AutoModel, AutoModelForSequenceClassification

    verbosity = transformers.logging.get_verbosity()
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # a weights bar per export is noise
    try:
        # eager attention: its explicit matrix products export to a graph ONNX Runtime runs 1.3x
        # faster than the fused SDPA's decomposition, and int8 quantises them (measured at 512 tokens)
        kw = {"dtype": torch.float32, "attn_implementation": "eager"}
        if head == "logit":
            return _Logit(AutoModelForSequenceClassification.from_pretrained(str(folder), **kw))
        return _Embedding(AutoModel.from_pretrained(str(folder), **kw), pooling)
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bar:
            transformers.utils.logging.enable_progress_bar()


class _Logit(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw).logits[:, 0]


class _Embedding(nn.Module):
    def __init__(self, inner, pooling: str):
        super().__init__()
        self.inner, self.pooling = inner, pooling

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        h = self.inner(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        if self.pooling == "cls":
            v = h[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(v, dim=-1)
