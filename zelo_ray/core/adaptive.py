"""Adaptive pair selection: spend a query's judge calls where its ranking is still uncertain.

The paper's k-regular cycle graph (:func:`zelo_ray.core.graph.cycle_pairs`) gives every document
the same k comparisons, although a reranker is judged by the top of its list and an order that
is already certain gains nothing from another vote. Here judging runs in rounds: the first round
is one random Hamiltonian cycle (every document compared twice, the graph connected), and after
each round the Elo fit — scores and standard errors — picks the next round's pairs greedily by

    value(i, j) = importance(i, j) · I(p_ij) · v² / (1 + I(p_ij) · v),    v = se_i² + se_j²

the expected drop in the variance of the score difference e_i − e_j from one more outcome
(a Gaussian update with the link's Fisher information ``I`` at the predicted win probability
``p_ij``), weighted by how likely either document is to sit in the top ``top`` (the chance its
score is above the cut between the ``top``-th and the next one). Documents deep in the tail keep
a small weight, so their order still improves where it is cheap. This is uncertainty sampling for
top-k identification in the spirit of active ranking from pairwise comparisons (e.g. Heckel et
al., "Active ranking from pairwise comparisons and when parametric assumptions don't help", 2019).

Pure functions: arrays in, arrays out, randomness only from the generator passed in.

Example::

    >>> import numpy as np
    >>> from zelo_ray.core.adaptive import next_pairs, round_budgets
    >>> round_budgets(100, 4, 4)         # 200 pairs: a cycle of 100, then 34 + 33 + 33
    [100, 34, 33, 33]
    >>> scores = np.linspace(2, -2, 10)  # an uncertain head, a settled tail
    >>> stderr = np.r_[np.full(3, 1.0), np.full(7, 0.1)]
    >>> judged = np.array([[i, (i + 1) % 10] for i in range(10)])
    >>> pairs = next_pairs(scores, stderr, judged, 4, top=3, rng=np.random.default_rng(0))
    >>> all(min(p) < 3 for p in pairs.tolist())   # every new pair involves the head
    True
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

__all__ = ["TAIL_WEIGHT", "next_pairs", "pair_values", "round_budgets", "settled", "top_membership"]

TAIL_WEIGHT = 0.1
"""Least importance of a pair: a tail document's comparisons still count a little (the reranker
is trained on every candidate's score, not only the top's)."""
_UNSEEN_SE = 10.0
"""Standard error given to a document without any comparison yet (its score is unknown)."""


def round_budgets(n: int, k: float, rounds: int) -> list[int]:
    """Pairs per round for one query of ``n`` candidates at ``k`` comparisons per document
    (``round(k·n/2)`` pairs in all, as many as ``k``-regular cycles): the first round a cycle of
    ``n`` pairs, the rest split evenly over the remaining ``rounds − 1``.

    With n ≤ 3 the whole budget is the complete graph, in one round.
    """
    if n < 2:
        return [0]
    total = min(int(round(k * n / 2)), n * (n - 1) // 2)
    if n <= 3 or rounds <= 1:
        return [total]
    first = min(n, total)
    rest = total - first
    more = rounds - 1
    return [first] + [rest // more + (1 if r < rest % more else 0) for r in range(more)]


def _se(stderr: np.ndarray) -> np.ndarray:
    se = np.asarray(stderr, dtype=np.float64)
    return np.where(np.isfinite(se) & (se > 0), se, _UNSEEN_SE)


def top_membership(scores: np.ndarray, stderr: np.ndarray, top: int) -> np.ndarray:
    """P(document i is among the ``top`` best): Φ((e_i − t) / se_i), t halfway between the
    ``top``-th and the next score. All ones when there are at most ``top`` documents.

    >>> top_membership(np.array([3.0, 0.0, -3.0]), np.array([0.5, 0.5, 0.5]), 1).round(3).tolist()
    [0.999, 0.001, 0.0]
    """
    e = np.asarray(scores, dtype=np.float64)
    if len(e) <= top:
        return np.ones(len(e))
    ranked = np.sort(e)[::-1]
    cut = 0.5 * (ranked[top - 1] + ranked[top])
    return ndtr((e - cut) / _se(stderr))


def _information(diff: np.ndarray, model: str) -> np.ndarray:
    """Fisher information of one outcome about e_i − e_j = ``diff`` under the link of ``model``."""
    from zelo_ray.core.elo import win_probability

    p = np.clip(win_probability(diff, model), 1e-12, 1 - 1e-12)
    if model == "bradley_terry":
        return p * (1 - p)
    density = np.exp(-0.5 * diff ** 2) / math.sqrt(2 * math.pi)
    return density ** 2 / (p * (1 - p))


def _parts(scores: np.ndarray, stderr: np.ndarray, top: int, model: str):
    """(importance, Fisher information) matrices and the variances of a query's documents."""
    e = np.asarray(scores, dtype=np.float64)
    se = _se(stderr)
    info = _information(e[:, None] - e[None, :], model)
    pi = top_membership(e, se, top)
    importance = np.maximum(np.maximum(pi[:, None], pi[None, :]), TAIL_WEIGHT)
    return importance, info, se ** 2


def _gain(info: np.ndarray, v: np.ndarray) -> np.ndarray:
    return info * v ** 2 / (1 + info * v)


def pair_values(scores: np.ndarray, stderr: np.ndarray, *, top: int, model: str = "thurstone") -> np.ndarray:
    """(n, n) symmetric value of judging each pair once more (zero on the diagonal); see the
    module docstring for the formula."""
    importance, info, var = _parts(scores, stderr, top, model)
    out = importance * _gain(info, var[:, None] + var[None, :])
    np.fill_diagonal(out, 0.0)
    return out


def settled(scores: np.ndarray, stderr: np.ndarray, *, top: int, confidence: float) -> bool:
    """Whether the order of the first ``top + 1`` documents is known at ``confidence``: every
    two neighbours in the current ranking are in the right order with probability ≥ confidence
    (Φ(|e_i − e_j| / √(se_i² + se_j²)))."""
    e, se = np.asarray(scores, dtype=np.float64), _se(stderr)
    order = np.argsort(-e, kind="stable")[: top + 1]
    if len(order) < 2:
        return True
    a, b = order[:-1], order[1:]
    z = np.abs(e[a] - e[b]) / np.sqrt(se[a] ** 2 + se[b] ** 2)
    return bool((ndtr(z) >= confidence).all())


def next_pairs(scores: np.ndarray, stderr: np.ndarray, judged: np.ndarray, m: int, *, top: int = 20,
               model: str = "thurstone", rng: np.random.Generator) -> np.ndarray:
    """Up to ``m`` new pairs (shape (≤ m, 2), random orientation) for one query, chosen one at a
    time: the unjudged pair of highest :func:`pair_values`, after which its two documents'
    variances shrink as one more outcome would shrink them (1/se² grows by the pair's Fisher
    information) and their pairs are valued again — so a round spreads over the uncertain head
    instead of spending itself on one document, without waiting for the judges' answers.

    ``judged``: (E, 2) local indexes of the pairs already judged (either orientation)."""
    n = len(scores)
    if m <= 0 or n < 2:
        return np.zeros((0, 2), np.int64)
    importance, info, var = _parts(scores, stderr, top, model)
    values = importance * _gain(info, var[:, None] + var[None, :])
    # ties (an all-unseen query) broken at random, not by index
    values += rng.random((n, n)) * 1e-12
    values = np.triu(values, 1) + np.tril(np.full((n, n), -np.inf))
    judged = np.asarray(judged, dtype=np.int64).reshape(-1, 2)
    values[np.minimum(judged[:, 0], judged[:, 1]), np.maximum(judged[:, 0], judged[:, 1])] = -np.inf
    out = []
    while len(out) < m:
        flat = int(np.argmax(values))
        a, b = divmod(flat, n)
        if not np.isfinite(values[a, b]):
            break
        out.append((a, b))
        values[a, b] = -np.inf
        var[a] = 1 / (1 / var[a] + info[a, b])
        var[b] = 1 / (1 / var[b] + info[a, b])
        for x in (a, b):
            row = importance[x] * _gain(info[x], var[x] + var)
            open_ = np.isfinite(values[x, :])
            values[x, open_] = row[open_]
            open_ = np.isfinite(values[:, x])
            values[open_, x] = row[open_]
    pairs = np.asarray(out, dtype=np.int64).reshape(-1, 2)
    flip = rng.random(len(pairs)) < 0.5
    pairs[flip] = pairs[flip][:, ::-1]
    return pairs
