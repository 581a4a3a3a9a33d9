"""Sections of the zELO core: the pair graph, the Elo fit and the simulation (`zelo simulate`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from zelo_ray.config.base import Strict, even_degree

__all__ = ["EloConfig", "GraphConfig", "SimulateConfig", "SimulatedEnsembleConfig"]


class GraphConfig(Strict):
    """Which document pairs of a query get judged."""

    strategy: Literal["cycles", "random", "all", "adaptive"] = Field(
        "cycles",
        description="'cycles': union of k/2 random Hamiltonian cycles (zELO); 'random': the same "
        "number of uniformly random pairs; 'all': every pair (n(n-1)/2 judgments); 'adaptive': the "
        "same budget as k-regular cycles spent in `rounds` rounds — one random cycle, then the "
        "pairs the Elo fit is least sure of near the top (docs/judging.md).",
    )
    k: int = Field(8, ge=2, description="Comparisons per document: N = k*n/2 pairs per query (even for "
                                        "'cycles': k/2 Hamiltonian cycles).")
    rounds: int = Field(8, ge=2, description="'adaptive': judging rounds per bucket of queries (each is "
                                             "one wave of judge calls; more rounds adapt more, at the "
                                             "latency of one more wave).")
    top: int = Field(20, ge=1, description="'adaptive': the head of the ranking the pairs are spent on "
                                           "(a tail document keeps a small weight).")
    confidence: float | None = Field(None, gt=0.5, lt=1.0, description="'adaptive': a query stops early "
                                     "once every two neighbours of its top `top` + 1 are ordered with at "
                                     "least this probability (null: always spend the whole budget).")

    @field_validator("k")
    @classmethod
    def _degree(cls, k: int, info: ValidationInfo) -> int:
        # cycles are k/2 Hamiltonian cycles; the other strategies take any budget
        return even_degree(k) if info.data.get("strategy", "cycles") == "cycles" else k


class EloConfig(Strict):
    """Maximum-likelihood fit of Elo scores from soft pairwise outcomes."""

    model: Literal["thurstone", "bradley_terry"] = Field(
        "thurstone", description="Link function: Thurstone (normal CDF) or Bradley-Terry (logistic)."
    )
    prior: float = Field(0.01, ge=0, description="L2 prior λ on scores; keeps unbeaten documents finite.")
    tol: float = Field(1e-6, gt=0, description="Stop a query's fit when max |gradient| <= tol.")
    max_iter: int = Field(100, ge=1, description="Newton iterations per query before reporting failure.")
    stderr: bool = Field(True, description="Compute per-document standard errors (dense O(n^3) per query).")


class SimulatedEnsembleConfig(Strict):
    """The simulated judge ensemble of `zelo simulate` (outputs are labelled SIMULATION). Not the
    ensemble that judges a collection: that is ``annotate.judges``."""

    n_judges: int = Field(3, ge=1, description="Ensemble size |P|.")
    noise_sd: float = Field(0.2, ge=0, description="Std. dev. of the Gaussian noise on the logit.")
    uniform_mix: float = Field(0.02, ge=0, le=1, description="Share of judgments replaced by a uniform draw.")
    position_bias: float = Field(0.0, description="Logit bonus of the document shown first.")
    clamp: bool = Field(True, description="Clamp each score to {-1, 0, 1} before averaging (paper's rule).")
    min_votes: int = Field(1, ge=1, description="Pairs with fewer answering judges are dropped.")


class SimulateConfig(Strict):
    """The simulated end-to-end demo: hidden relevance → pairs → ensemble → Elo → report."""

    n_queries: int = Field(300, ge=1, description="Number of simulated queries.")
    n_docs: int = Field(100, ge=2, description="Candidates per query (n).")
    score_low: float = Field(-4.0, description="Lower end of the uniform hidden relevance.")
    score_high: float = Field(4.0, description="Upper end of the uniform hidden relevance.")
    seed: int = Field(0, description="Seed for hidden scores and judgments.")
    output_dir: str = Field("runs/simulate", description="Directory for zelo.parquet, report.json and plots.")
    ensemble: SimulatedEnsembleConfig = Field(default_factory=SimulatedEnsembleConfig,
                                              description="The simulated judges (was the top-level `judges:`).")

