"""Simulated LLM judges, for tests and benchmarks only (every output says SIMULATION).

Noise model measured by the zELO authors for an LLM judge (see DESIGN.md): each document has a
hidden relevance s (spread about -4..4); a judgment of (A, B) is P(A ≻ B) = σ(s_A − s_B + ε),
ε ~ N(0, 0.2²), replaced by a uniform draw 2% of the time. Optionally a position bias b is
added to the logit of whichever document the judge was shown first. A judge reports the
score 1 − 2·P(A ≻ B) in [-1, 1] (negative: A more relevant), the convention of real judges.

Example::

    >>> import numpy as np
    >>> from zelo_ray.core.simulate import JudgeModel, hidden_scores, simulate_ensemble
    >>> rng = np.random.default_rng(0)
    >>> s = hidden_scores(1, 4, rng)[0]
    >>> pairs = np.array([[0, 1], [2, 3]])
    >>> votes = simulate_ensemble(pairs, s, 3, rng, JudgeModel())
    >>> votes.shape
    (2, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtr

__all__ = [
    "LABEL",
    "SIMULATION_VERSION",
    "JudgeModel",
    "SimulatedBatch",
    "hidden_scores",
    "judge_scores",
    "latent_from_grades",
    "simulate_ensemble",
    "simulate_queries",
]

LABEL = "SIMULATION"
"""Written into every report and table that simulated judgments produce."""


SIMULATION_VERSION = "latent-v1"
"""Part of every simulated call's cache key: votes simulated under another mapping of labels to
latent relevance are never reused."""
LATENT_RANGE = (-3.0, 3.0)
"""Latent relevance of the lowest and the highest qrels grade (the measured judges' hidden scores
spread about −4..4; the within-grade spread fills the rest)."""
LATENT_SPREAD = 0.5
"""Standard deviation of a document's latent score around its grade's level: two documents of
one grade differ by N(0, 2·0.5²), a score of about ±0.25 that the clamp makes a tie, as real
judges mostly call two equally relevant documents."""


def latent_from_grades(grades: np.ndarray, max_grade: float, z: np.ndarray, *,
                       latent_range: tuple[float, float] = LATENT_RANGE,
                       spread: float = LATENT_SPREAD) -> np.ndarray:
    """Map qrels grades onto the latent scale of the judge noise model.

    Grade g of a collection whose best grade is G sits at ``low + (high − low)·g/G``, plus
    ``spread·z`` (``z``: a standard normal draw per (query, document), fixed for the document).
    On a binary collection a relevant document then beats a non-relevant one with
    P ≈ σ(6) = 0.998 — a decisive vote, as a frontier LLM gives for a clearly relevant document —
    where the raw gains (σ(1) = 0.73, a score of ±0.46) clamp to a tie most of the time.

    >>> latent_from_grades(np.array([0, 1, 2]), 2, np.zeros(3)).tolist()
    [-3.0, 0.0, 3.0]
    """
    grades = np.asarray(grades, dtype=np.float64)
    low, high = latent_range
    level = np.clip(grades / max_grade, 0.0, 1.0) if max_grade > 0 else np.zeros_like(grades)
    return low + (high - low) * level + spread * np.asarray(z, dtype=np.float64)


@dataclass(frozen=True)
class JudgeModel:
    """Parameters of one simulated judge."""

    noise_sd: float = 0.2
    uniform_mix: float = 0.02
    position_bias: float = 0.0
    link: str = "logistic"
    """'logistic' (the measured model, σ) or 'probit' (Φ), to test which Elo model a fit picks."""

    def __post_init__(self) -> None:
        if self.noise_sd < 0:
            raise ValueError(f"noise_sd={self.noise_sd} must be >= 0")
        if not 0 <= self.uniform_mix <= 1:
            raise ValueError(f"uniform_mix={self.uniform_mix} must be in [0, 1]")
        if self.link not in ("logistic", "probit"):
            raise ValueError(f"link={self.link!r}: expected 'logistic' or 'probit'")


def hidden_scores(
    n_queries: int, n_docs: int, rng: np.random.Generator, low: float = -4.0, high: float = 4.0
) -> np.ndarray:
    """(n_queries, n_docs) hidden relevance, uniform on [low, high]."""
    if n_queries < 0 or n_docs < 0:
        raise ValueError(f"n_queries={n_queries} and n_docs={n_docs} must be >= 0")
    return rng.uniform(low, high, size=(n_queries, n_docs))


def judge_scores(
    s_first: np.ndarray, s_second: np.ndarray, rng: np.random.Generator, judge: JudgeModel
) -> np.ndarray:
    """Scores in [-1, 1] of one judge shown (first, second); negative: first more relevant."""
    s_first = np.asarray(s_first, dtype=np.float64)
    logit = s_first - np.asarray(s_second, dtype=np.float64) + judge.position_bias
    if judge.noise_sd > 0:
        logit = logit + rng.normal(0.0, judge.noise_sd, size=logit.shape)
    p_first = expit(logit) if judge.link == "logistic" else ndtr(logit)
    if judge.uniform_mix > 0:
        mixed = rng.random(logit.shape) < judge.uniform_mix
        p_first = np.where(mixed, rng.random(logit.shape), p_first)
    return 1.0 - 2.0 * p_first


def simulate_ensemble(
    pairs: np.ndarray,
    scores: np.ndarray,
    n_judges: int,
    rng: np.random.Generator,
    judge: JudgeModel | list[JudgeModel],
) -> np.ndarray:
    """(E, n_judges) scores for pairs (A, B), each call shown in a random order, sign restored.

    ``scores`` is indexed by the node ids in ``pairs``. Randomising the order per call and
    flipping the sign back is what the real judging stage does, so a position bias averages out
    the same way it would with real judges.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    judges = judge if isinstance(judge, list) else [judge] * n_judges
    if len(judges) != n_judges:
        raise ValueError(f"{len(judges)} judge models given for n_judges={n_judges}")
    s_a = scores[pairs[:, 0]]
    s_b = scores[pairs[:, 1]]
    out = np.empty((len(pairs), n_judges))
    for p, jm in enumerate(judges):
        swap = rng.random(len(pairs)) < 0.5
        first = np.where(swap, s_b, s_a)
        second = np.where(swap, s_a, s_b)
        raw = judge_scores(first, second, rng, jm)
        out[:, p] = np.where(swap, -raw, raw)
    return out


@dataclass(frozen=True)
class SimulatedBatch:
    """Many simulated queries laid out group after group, ready for :func:`zelo_ray.core.elo.fit`."""

    i: np.ndarray
    """(E,) global node index of document A of each pair."""
    j: np.ndarray
    """(E,) global node index of document B."""
    votes: np.ndarray
    """(E, P) judge scores in [-1, 1] (negative: A more relevant)."""
    group: np.ndarray
    """(Q * n,) query of every node."""
    hidden: np.ndarray
    """(Q, n) the hidden relevance that generated the votes."""


def simulate_queries(
    n_queries: int,
    n_docs: int,
    rng: np.random.Generator,
    *,
    strategy: str = "cycles",
    k: int = 8,
    n_judges: int = 3,
    judge: JudgeModel | None = None,
    low: float = -4.0,
    high: float = 4.0,
    graph_pool: int | None = None,
) -> SimulatedBatch:
    """Hidden scores, a pair graph per query and ensemble votes for ``n_queries`` queries.

    ``graph_pool``: draw only this many graphs and give each query one of them under a fresh
    random relabelling of its nodes (a relabelled random graph is again a random graph); this
    keeps 100k-query benchmarks from being dominated by graph construction.
    """
    from zelo_ray.core.graph import sample_pairs

    judge = judge or JudgeModel()
    hidden = hidden_scores(n_queries, n_docs, rng, low, high)
    if graph_pool:
        pool = [sample_pairs(strategy, n_docs, k, rng) for _ in range(graph_pool)]
        base = np.stack(pool)  # (pool, m, 2): every graph of one strategy has m edges
        pick = rng.integers(0, graph_pool, n_queries)
        relabel = np.argsort(rng.random((n_queries, n_docs)), axis=1)
        local = relabel[np.arange(n_queries)[:, None, None], base[pick]]
    else:
        local = np.stack([sample_pairs(strategy, n_docs, k, rng) for _ in range(n_queries)])
    offset = (np.arange(n_queries, dtype=np.int64) * n_docs)[:, None, None]
    pairs = (local + offset).reshape(-1, 2)
    votes = simulate_ensemble(pairs, hidden.ravel(), n_judges, rng, judge)
    group = np.repeat(np.arange(n_queries, dtype=np.int64), n_docs)
    return SimulatedBatch(pairs[:, 0], pairs[:, 1], votes, group, hidden)
