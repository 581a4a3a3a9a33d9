"""Cross-query calibration of Elo scores, and the mapping to training targets.

Elo scores are fitted per query and centred (Σe = 0 within a query), so a 0 in one query and a
0 in another mean nothing alike: a query with only relevant candidates and one with none look
the same. The zELO authors correct this with "a bias correction step, modeled using
cross-query comparisons and solved with MLE". Here a cross-query pair compares document d1 of
query q1 with d2 of q2 ("which document answers its own query better?"); with its soft
outcome w, the model is

    P((q1, d1) ≻ (q2, d2)) = F(e1 + b_q1 − e2 − b_q2),

F = Φ (Thurstone) or σ (Bradley–Terry), with the within-query scores e held fixed and one
offset b per query fitted by maximum likelihood under an L2 prior (λ/2)Σb² (which also fixes
the common shift: the optimum has Σb = 0). Calibrated score = e + b_q.

Targets for pointwise training are a logistic squash of the calibrated score around the
median: ``target = σ((c − median(c)) / T)``; T (default 1) is in Elo units, so a document one
unit above the median gets 0.73.

Example::

    >>> import numpy as np
    >>> from zelo_ray.core.calibration import fit_offsets
    >>> # query 0's documents are all better than query 1's: the same Elo, but w = 1
    >>> res = fit_offsets(np.array([0, 0]), np.array([1, 1]), np.array([0.0, 0.5]),
    ...                   np.array([1.0, 0.9]), 2, prior=0.1)
    >>> bool(res.offsets[0] > 0 > res.offsets[1]), round(float(res.offsets.sum()), 6)
    (True, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, log_ndtr

__all__ = ["OffsetResult", "fit_offsets", "targets"]


@dataclass(frozen=True)
class OffsetResult:
    offsets: np.ndarray
    """(Q,) offset per query (0 for a query in no cross pair)."""
    converged: bool
    nll: float
    iterations: int


def _log_f_and_grad(x: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """log F(x) and d/dx log F(x), stable far into both tails."""
    if model == "thurstone":
        logf = log_ndtr(x)
        logpdf = -0.5 * x * x - 0.5 * np.log(2 * np.pi)
        return logf, np.exp(logpdf - logf)
    if model == "bradley_terry":
        return log_expit(x), expit(-x)
    raise ValueError(f"model={model!r}: expected 'thurstone' or 'bradley_terry'")


def fit_offsets(q1: np.ndarray, q2: np.ndarray, diff: np.ndarray, w: np.ndarray, n_queries: int, *,
                model: str = "thurstone", prior: float = 0.1, tol: float = 1e-8,
                max_iter: int = 1000) -> OffsetResult:
    """MLE offsets. ``diff`` = e1 − e2 (within-query Elo of the two documents); ``w`` = soft
    outcome P((q1, d1) ≻ (q2, d2)) in [0, 1]."""
    q1 = np.asarray(q1, dtype=np.int64)
    q2 = np.asarray(q2, dtype=np.int64)
    diff = np.asarray(diff, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if not (len(q1) == len(q2) == len(diff) == len(w)):
        raise ValueError("q1, q2, diff and w must have the same length")
    if len(q1) and (min(q1.min(), q2.min()) < 0 or max(q1.max(), q2.max()) >= n_queries):
        raise ValueError(f"query indices must be in [0, {n_queries})")
    if np.any(q1 == q2):
        raise ValueError(f"cross-query pair {int(np.flatnonzero(q1 == q2)[0])} compares a query with itself")
    if not np.all(np.isfinite(diff)) or np.any((w < 0) | (w > 1)) or not np.all(np.isfinite(w)):
        raise ValueError("diff must be finite and w in [0, 1]")
    if prior < 0:
        raise ValueError(f"prior={prior} must be >= 0")

    def objective(b: np.ndarray) -> tuple[float, np.ndarray]:
        x = diff + b[q1] - b[q2]
        lp, gp = _log_f_and_grad(x, model)
        ln, gn = _log_f_and_grad(-x, model)
        nll = -(w * lp + (1 - w) * ln).sum() + 0.5 * prior * (b @ b)
        dx = -(w * gp - (1 - w) * gn)
        grad = np.bincount(q1, dx, n_queries) - np.bincount(q2, dx, n_queries) + prior * b
        return float(nll), grad

    if len(q1) == 0:
        return OffsetResult(np.zeros(n_queries), True, 0.0, 0)
    res = minimize(objective, np.zeros(n_queries), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15})
    b = res.x - res.x.mean()  # the likelihood ignores a common shift; report the centred gauge
    return OffsetResult(b, bool(res.success), float(res.fun), int(res.nit))


def targets(calibrated: np.ndarray, temperature: float = 1.0, *, center: float | None = None) -> np.ndarray:
    """σ((c − median(c)) / T) in (0, 1); NaN stays NaN. ``center``: the median of a larger set
    ``calibrated`` is one piece of (default: of ``calibrated`` itself)."""
    c = np.asarray(calibrated, dtype=np.float64)
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    if center is None:
        finite = np.isfinite(c)
        center = np.median(c[finite]) if finite.any() else 0.0
    return expit((c - center) / temperature)
