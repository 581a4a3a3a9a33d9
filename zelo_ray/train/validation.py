"""Validation during training: training queries held out from fitting, graded by their own zELO
scores (never test qrels), score each checkpoint; the best one becomes the model and training
stops when ``train.patience`` validations in a row bring no gain.

The grades are :func:`zelo_ray.eval.labelfree.graded_qrels` of the held-out queries' calibrated
scores (the top 5% / next 10% / next 15% of their judged candidates get 3 / 2 / 1), so
validation measures what the targets say — the only relevance a label-free run has.

Example::

    >>> from zelo_ray.train.validation import split_validation
    >>> fit, val = split_validation([f"q{i}" for i in range(10)], 0.2, seed=0)
    >>> len(fit) + len(val), bool(val)
    (10, True)
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.eval.labelfree import graded_qrels
from zelo_ray.eval.splits import seeded_split

__all__ = ["split_validation", "validation_grades", "validation_scores", "validation_set"]


def split_validation(queries: list[str], fraction: float, *, seed: int) -> tuple[list[str], list[str]]:
    """(fit, validation) training queries; no validation when ``fraction`` is 0 or a side would be empty."""
    if fraction <= 0 or len(set(queries)) < 2:
        return sorted(set(queries)), []
    fit, val = seeded_split(queries, fraction, seed)
    if not fit or not val:
        return sorted(set(queries)), []
    return fit, val


def validation_grades(table: pa.Table, queries: list[str]) -> dict[str, dict[str, int]]:
    """Graded relevance of the validation queries' judged candidates, from the training table:
    zELO scores → grades; binary-qrels targets (the baseline) → their 0/1 labels."""
    t = table.filter(pc.is_in(table["query_id"], value_set=pa.array(queries, pa.string())))
    if "calibrated" in t.column_names:
        return graded_qrels(t)
    out: dict[str, dict[str, int]] = {}
    for q, d, y in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["target"].to_pylist()):
        out.setdefault(q, {})[d] = int(round(y))
    return out


def validation_scores(table: pa.Table, queries: list[str]) -> dict[str, dict[str, float]]:
    """The validation queries' candidates' own scores: calibrated zELO scores (the binary-qrels
    baseline: its 0/1 targets), which choose the served function's BM25 weight."""
    t = table.filter(pc.is_in(table["query_id"], value_set=pa.array(queries, pa.string())))
    col = "calibrated" if "calibrated" in t.column_names else "target"
    out: dict[str, dict[str, float]] = {}
    for q, d, y in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t[col].to_pylist()):
        if y is not None:
            out.setdefault(q, {})[d] = float(y)
    return out


def validation_set(col, candidates, queries: list[str], qrels: dict, depth: int) -> dict:
    """Candidates (hybrid top-``depth``) and texts of the validation queries, shipped to the
    rank-0 worker, with their grades."""
    from zelo_ray.eval.evaluate import rankings_from_candidates
    from zelo_ray.data.texts import doc_texts, query_texts

    runs = rankings_from_candidates(candidates, queries, depth)["hybrid"]
    qt = query_texts(col)
    dt = doc_texts(col, [d for ds in runs.values() for d in ds])
    qids = sorted(runs)
    return {"query_ids": qids, "queries": [qt[q] for q in qids], "doc_ids": [runs[q] for q in qids],
            "docs": [[dt[d] for d in runs[q]] for q in qids],
            "qrels": {q: {d: int(r) for d, r in qrels.get(q, {}).items()} for q in qids}}
