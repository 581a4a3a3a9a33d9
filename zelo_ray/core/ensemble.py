"""Turn an ensemble's pairwise scores into soft outcomes, as in zELO (arXiv 2509.12541, §3).

Each judge reads (query, A, B) and returns a score in [-1, 1], negative when A is the more
relevant document. The paper clamps every score to {-1, 0, 1}, averages over the judges that
answered, and uses w = (1 - mean) / 2 = P(A ≻ B) as the soft outcome of the pair. A judge call
that failed is a *missing vote* (NaN here): it is left out of the mean, never counted as a
score — zbench counts it as a vote for A, we do not.

Example::

    >>> import numpy as np
    >>> from zelo_ray.core.ensemble import soft_outcomes
    >>> votes = np.array([[-1.0, -0.8, np.nan],    # two judges prefer A, one call failed
    ...                   [0.2, 0.9, 1.0]])          # 0.2 clamps to 0 (a tie)
    >>> out = soft_outcomes(votes)
    >>> out.w.round(3).tolist(), out.n_votes.tolist()
    ([1.0, 0.167], [2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SoftOutcomes", "clamp_votes", "soft_outcomes"]


def clamp_votes(scores: np.ndarray) -> np.ndarray:
    """Round each score in [-1, 1] to the nearest of {-1, 0, 1} (|s| <= 0.5 is a tie); NaN stays."""
    s = np.clip(np.asarray(scores, dtype=np.float64), -1.0, 1.0)
    out = np.where(s > 0.5, 1.0, np.where(s < -0.5, -1.0, 0.0))
    return np.where(np.isnan(s), np.nan, out)


@dataclass(frozen=True)
class SoftOutcomes:
    """Per-pair aggregation of an ensemble."""

    w: np.ndarray
    """(E,) P(A ≻ B); NaN where the pair has fewer than ``min_votes`` votes."""
    n_votes: np.ndarray
    """(E,) number of judges that answered."""
    valid: np.ndarray
    """(E,) bool: enough votes to use the pair."""


def soft_outcomes(scores: np.ndarray, *, clamp: bool | np.ndarray = True, min_votes: int = 1) -> SoftOutcomes:
    """Aggregate an (E, P) array of judge scores (NaN = missing vote) into soft outcomes.

    Args:
        scores: (E, P) scores in [-1, 1], negative when A (the first document) is more relevant.
        clamp: round each score to {-1, 0, 1} first (the paper's rule); False keeps the raw
            scores (the "soft mean" variant); a (P,) bool array decides per judge (a pairwise
            model's probability is kept as it is, an LLM's rating is rounded).
        min_votes: pairs with fewer answering judges get w = NaN and valid = False.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (pairs, judges); got shape {s.shape}")
    if min_votes < 1:
        raise ValueError(f"min_votes={min_votes} must be >= 1")
    finite = ~np.isnan(s)
    out_of_range = finite & ((s < -1.0) | (s > 1.0))
    if out_of_range.any():
        e, p = np.argwhere(out_of_range)[0]
        raise ValueError(f"score of pair {e}, judge {p} is {s[e, p]}, outside [-1, 1]")
    mask = np.broadcast_to(np.asarray(clamp, dtype=bool), (s.shape[1],))
    if mask.any():
        s = np.where(mask[None, :], clamp_votes(s), s)
    n_votes = finite.sum(axis=1)
    total = np.where(finite, s, 0.0).sum(axis=1)
    valid = n_votes >= min_votes
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n_votes
    w = np.where(valid, (1.0 - mean) / 2.0, np.nan)
    return SoftOutcomes(w=w, n_votes=n_votes, valid=valid)
