"""The served ranking function: the trained model's score fused with BM25.

A model trained on a few hundred queries knows relevance the way its judges do but can lose the
exact-match evidence BM25 keeps (measured on Cranfield: the model alone 0.401 nDCG@10, BM25
0.376, the two fused 0.420). The served score of a document among the documents of one rerank
call is

    σ((1 − w) · z(logit) + w · z(bm25))

where z standardises over that call's documents and w is chosen on the validation queries
(training queries held out from fitting) as the weight whose fused scores correlate best with
those queries' own zELO scores. With w = 0 the
served score is the model's σ(logit), unchanged. The weight and the corpus's BM25 statistics
(:class:`zelo_ray.retrieval.lexical.TermStats`) are written into the checkpoint, so
``zelo serve`` computes, for a ``(query, documents)`` call, the same function
``zelo evaluate --reranker`` measured.

Because of z, a fused score ranks the documents *of one call*; it is not comparable across
calls (the model-only score is).

Example::

    >>> import numpy as np
    >>> from zelo_ray.scoring.fusion import fuse
    >>> p = np.array([0.9, 0.5, 0.1])
    >>> bool((fuse(p, np.zeros(3), 0.0) == p).all())      # w = 0: the model's score
    True
    >>> fuse(p, np.array([0.0, 5.0, 0.0]), 0.9).argmax()  # BM25 weighs most
    np.int64(1)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["FUSION_FILE", "WEIGHTS", "Fusion", "choose_weight", "fit_fusion", "fuse", "fusion_weight", "load_fusion",
           "logit", "write_fusion"]

FUSION_FILE = "zelo_fusion.json"
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(10))
"""BM25 weights tried on the validation queries (never 1: the served function keeps the model)."""

_EPS = 1e-7


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def fuse(probs: np.ndarray, bm25: np.ndarray, weight: float) -> np.ndarray:
    """Fused relevance in (0, 1) of one call's documents from the model's σ(logit) and BM25."""
    probs = np.asarray(probs, np.float64)
    if weight == 0:
        return probs
    return 1.0 / (1.0 + np.exp(-_combined(probs, bm25, weight)))


def logit(probs: np.ndarray) -> np.ndarray:
    """σ⁻¹ of the model's scores (clipped, so 0 and 1 stay finite)."""
    p = np.clip(np.asarray(probs, np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _combined(probs: np.ndarray, bm25: np.ndarray, weight: float) -> np.ndarray:
    """The fused score before the sigmoid (the model's z-scored logit when ``weight`` is 0)."""
    return (1 - weight) * _z(logit(probs)) + weight * _z(np.asarray(bm25, np.float64))


def choose_weight(groups: list[tuple[str, list[str], np.ndarray, np.ndarray]], elo: dict[str, dict[str, float]],
                  weights: tuple[float, ...] = WEIGHTS) -> tuple[float, dict[float, float]]:
    """The BM25 weight whose fused scores agree best with the zELO scores: the mean, over
    ``groups`` (``(query_id, doc_ids, model probs, bm25)`` each), of the Pearson correlation
    between a query's fused scores and its documents' ``elo``; ties go to the smaller weight.

    Correlation over every candidate, not nDCG@10 over a few graded ones, because validation
    sets are small: on Cranfield's 19 validation queries nDCG@10 swung by ±0.01 between
    neighbouring weights (it picked 0.9; test 0.397) while the correlation rose and fell once
    (it picked 0.5; test 0.419). Returns the weight and every weight's score."""
    from zelo_ray.core.stats import score_agreement

    table = {w: score_agreement({q: (ids, _combined(p, b, w)) for q, ids, p, b in groups}, elo) for w in weights}
    best = max(weights, key=lambda w: (round(table[w], 6), -w))
    return best, table


class Fusion:
    """A checkpoint's fusion: ``scores(query, docs, probs)`` → the served scores."""

    def __init__(self, weight: float, stats=None):
        if weight and stats is None:
            raise ValueError("a BM25 weight needs the corpus's BM25 statistics")
        self.weight, self.stats = float(weight), stats

    def scores(self, query: str, docs: list[str], probs: np.ndarray) -> np.ndarray:
        if self.weight == 0:
            return np.asarray(probs, np.float64)
        return fuse(probs, self.stats.scores(query, docs), self.weight)


def write_fusion(checkpoint: str | Path, weight: float, stats, report: dict) -> dict:
    """Store the weight (and, when it is used, the BM25 statistics) in the checkpoint folder."""
    checkpoint = Path(checkpoint)
    info = {"bm25_weight": float(weight), **report}
    if weight:
        stats.save(checkpoint)
        info["bm25"] = {"tokenizer": stats.tokenizer, "n_docs": stats.n_docs, "terms": len(stats.df)}
    tmp = checkpoint / (FUSION_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(checkpoint / FUSION_FILE)
    return info


def fusion_weight(checkpoint: str | Path) -> float:
    """The checkpoint's BM25 weight (0 when it has no fusion), without loading the statistics."""
    path = Path(checkpoint) / FUSION_FILE
    return float(json.loads(path.read_text()).get("bm25_weight", 0.0)) if path.exists() else 0.0


def load_fusion(checkpoint: str | Path) -> Fusion | None:
    """The checkpoint's fusion, or None when it has none (or its BM25 weight is 0)."""
    from zelo_ray.retrieval.lexical import TermStats

    path = Path(checkpoint) / FUSION_FILE
    weight = fusion_weight(checkpoint)
    if weight == 0:
        return None
    if not TermStats.exists(checkpoint):
        raise FileNotFoundError(f"{path}: BM25 weight {weight} but the checkpoint has no BM25 statistics "
                                "(bm25_stats.json, bm25_df.parquet); re-run `zelo train`")
    return Fusion(weight, TermStats.load(checkpoint))


def fit_fusion(checkpoint: str | Path, validation: dict, stats_fn: Callable[[], object], *, max_length: int,
               batch_size: int = 64, log=print, key=None, model=None) -> dict:
    """Score the validation queries' candidates with the trained model (``model``: the checkpoint
    already loaded), pick the BM25 weight and write it into the checkpoint; returns what was written."""
    import torch

    from zelo_ray.scoring.models import load_reranker

    model = model or load_reranker(str(checkpoint))
    stats = stats_fn()
    groups = []
    with torch.inference_mode():
        for qid, q, ids, docs in zip(validation["query_ids"], validation["queries"], validation["doc_ids"],
                                     validation["docs"]):
            if not ids:
                continue
            p = model.score([q] * len(docs), docs, max_length=max_length, batch_size=batch_size).numpy()
            groups.append((qid, list(ids), p, stats.scores(q, docs)))
    weight, table = choose_weight(groups, validation["elo"])
    info = write_fusion(checkpoint, weight, stats, {
        "chosen_on": f"{len(groups)} validation queries: mean Pearson r of the fused score with the zELO score",
        "val_r_by_weight": {str(w): round(v, 4) for w, v in table.items()}, "key": key})
    log(f"      fusion: BM25 weight {weight} (validation r with zELO scores {table[weight]:.3f}; model alone "
        f"{table[0.0]:.3f})")
    return info
