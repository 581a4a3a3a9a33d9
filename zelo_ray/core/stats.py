"""Summaries of recovered rankings shared by the simulation and the benchmarks.

Example::

    >>> import numpy as np
    >>> from zelo_ray.core.stats import kendall_rows, mean_ci
    >>> kendall_rows(np.array([[1, 2, 3], [1, 2, 3]]), np.array([[1, 2, 3], [3, 2, 1]])).tolist()
    [1.0, -1.0]
    >>> mean_ci(np.array([1.0, 1.0, 1.0]))
    (1.0, 0.0)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau

__all__ = ["kendall_rows", "mean_ci", "score_agreement"]


def kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall τ-b between matching rows of two (Q, n) arrays."""
    return np.array([kendalltau(x, y).statistic for x, y in zip(a, b)])


def mean_ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval."""
    x = np.asarray(x, dtype=np.float64)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return float(x.mean()), float(half)


def score_agreement(scores: dict[str, tuple[list[str], np.ndarray]], zelo: dict[str, dict[str, float]]) -> float:
    """How well a ranker's scores agree with the zELO scores: the mean over queries of the
    Pearson r between ``scores[q] = (doc_ids, values)`` and those documents' ``zelo[q]`` scores.

    A label-free validation signal that uses every scored candidate and the scores' magnitudes,
    so it is far less noisy on a small validation set than nDCG@10 over a few graded documents.
    Queries with fewer than two zELO-scored documents, or constant values, are skipped (0.0 when
    none is left).

    >>> import numpy as np
    >>> z = {"q": {"a": 2.0, "b": 0.0, "c": -1.0}}
    >>> score_agreement({"q": (["a", "b", "c"], np.array([3.0, 1.0, 0.0]))}, z)  # same spacing
    1.0
    >>> round(score_agreement({"q": (["a", "b", "c"], np.array([3.0, 0.5, 0.0]))}, z), 3)
    0.984
    """
    rs = []
    for q, (ids, values) in scores.items():
        y = np.array([zelo.get(q, {}).get(d, np.nan) for d in ids], np.float64)
        x = np.asarray(values, np.float64)
        ok = np.isfinite(y) & np.isfinite(x)
        if ok.sum() >= 2 and x[ok].std() > 0 and y[ok].std() > 0:
            rs.append(float(np.corrcoef(x[ok], y[ok])[0, 1]))
    return float(np.mean(rs)) if rs else 0.0
