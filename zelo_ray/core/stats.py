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

__all__ = ["kendall_rows", "mean_ci"]


def kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall τ-b between matching rows of two (Q, n) arrays."""
    return np.array([kendalltau(x, y).statistic for x, y in zip(a, b)])


def mean_ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval."""
    x = np.asarray(x, dtype=np.float64)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return float(x.mean()), float(half)
