"""Texts → token ids for a model folder, without importing transformers.

Starting an embedding actor spent ~8 of its ~10 s importing ``transformers`` for
``AutoTokenizer``; the folder's ``tokenizer.json`` holds the whole pipeline (normaliser,
pre-tokeniser, model, special tokens), which the Rust ``tokenizers`` library runs directly and
loads in a fraction of a second. A folder without that file (a slow-only tokenizer) falls back
to transformers.

Example::

    >>> from zelo_ray.retrieval.embedder import resolve_model
    >>> tok = TextTokenizer(resolve_model("default"))
    >>> tok(["Wing lift"], max_length=8)
    [[101, 3358, 6336, 102]]
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TextTokenizer"]


class TextTokenizer:
    """``tok(texts, max_length) → ids per text``, special tokens added, cut to ``max_length``
    (as ``AutoTokenizer(texts, truncation=True, max_length=…)`` does)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        config = _read(folder / "tokenizer_config.json")
        self.model_max_length = int(config.get("model_max_length") or 512)
        if (folder / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._fast.no_padding()  # the saved file may pad to a fixed length; we pad per batch
            self._fast.no_truncation()
            self._hf = None
            pad = config.get("pad_token")
            pad = pad.get("content") if isinstance(pad, dict) else pad
            self.pad_id = (self._fast.token_to_id(pad) if pad else None) or 0
        else:
            from transformers import AutoTokenizer

            self._fast, self._hf = None, AutoTokenizer.from_pretrained(str(folder))
            self.model_max_length = min(self.model_max_length, int(self._hf.model_max_length))
            self.pad_id = self._hf.pad_token_id or 0

    def __call__(self, texts: list[str], *, max_length: int) -> list[list[int]]:
        if self._hf is not None:
            return self._hf(list(texts), truncation=True, max_length=max_length)["input_ids"]
        self._fast.enable_truncation(max_length)
        return [e.ids for e in self._fast.encode_batch(list(texts), add_special_tokens=True)]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
