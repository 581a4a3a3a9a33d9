"""The `annotate` section: which pairs are judged, by which ensemble, and how votes become targets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from zelo_ray.config.base import Strict, even_degree
from zelo_ray.config.judges import JudgeConfig, SimulatedJudgeConfig

__all__ = ["AnnotateConfig", "CalibrationConfig", "SLMLoopConfig"]


def _default_judges() -> list[SimulatedJudgeConfig]:
    return [SimulatedJudgeConfig(name=f"sim-{i}", kind="simulated", model=f"simulated-{i}") for i in range(3)]


class CalibrationConfig(Strict):
    """Cross-query calibration: one offset per query from judged cross-query pairs, then targets."""

    k: int = Field(4, ge=0, description="Degree of the query graph of cross-query pairs (even; "
                   "Q*k/2 pairs, 0 disables calibration). Each edge judges a random candidate of "
                   "one query against a random candidate of the other.")
    prior: float = Field(0.1, ge=0, description="L2 prior on the offsets (keeps isolated queries at 0).")
    temperature: float = Field(1.0, gt=0, description="target = sigmoid((calibrated - median) / temperature).")

    _even = field_validator("k")(lambda v: even_degree(v))


class SLMLoopConfig(Strict):
    """The pairwise-SLM loop (`zelo slm`, the paper's Stage 2 economy): the ensemble judges a share
    of each query's pairs, a small pairwise model distilled from those outcomes judges the rest."""

    judge: str | None = Field(None, description="Name of the judge in `judges` that the distilled SLM "
                              "fills (a `vllm_pairwise` judge; its `model` is replaced by the distilled "
                              "folder). null: off — every judge judges every pair.")
    teacher_share: float = Field(0.25, gt=0, le=1, description="Share of the within-query pairs the "
                                 "ensemble judges (chosen by a hash of the pair id and the run seed, so a "
                                 "re-run picks the same ones); cross-query pairs are always the ensemble's.")
    base: str = Field("models/smollm2-135m-instruct", description="Local causal-LM folder the SLM is "
                      "distilled from (its tokenizer must encode ' A' and ' B' as single tokens).")
    epochs: float = Field(1.0, gt=0, description="Passes over the teacher pairs (each pair in both orders).")
    lr: float = Field(5e-5, gt=0, description="Peak learning rate (linear warm-up and decay).")
    batch_size: int = Field(8, ge=1, description="Prompts per distillation step.")
    max_length: int = Field(512, ge=16, description="Prompt tokens kept (the head and the question survive).")
    max_pairs: int | None = Field(None, ge=1, description="Distil on at most this many teacher pairs "
                                  "(a seeded sample; null: all).")
    heldout: float = Field(0.1, ge=0, lt=1, description="Share of the teacher pairs' queries held out of "
                           "distillation to measure the SLM's agreement with the ensemble before and after.")
    device: str = Field("auto", description="Where distillation runs: 'auto' (CUDA when there is one), "
                        "'cpu' or 'cuda'.")
    require_agreement: bool = Field(True, description="Let the distilled SLM judge only when its held-out "
                                    "measurement shows it agreeing with the ensemble (above chance and the "
                                    "base, significantly, not by position); otherwise stop after distillation "
                                    "and keep the ensemble-only Elo. false: judge with it anyway (a warning).")


class AnnotateConfig(Strict):
    """Pairs → judges → Elo: `zelo annotate`."""

    top_n: int = Field(100, ge=2, description="Candidates per query that get judged (by fused rank).")
    max_queries: int | None = Field(None, ge=1, description="Judge only the first N queries (by id) — "
                                    "for a quick run against a real LLM.")
    query_split: str | None = Field(None, description="Judge only queries of this qrels split (null: all "
                                    "queries with candidates).")
    seed: int = Field(0, description="Run seed: pair graphs and A/B orders derive from it.")
    judges: list[JudgeConfig] = Field(default_factory=_default_judges, min_length=1,
                                      description="The ensemble, one entry per judge "
                                      "(each entry's `kind` picks its backend and fields).")
    clamp: bool = Field(True, description="Clamp each score to {-1, 0, 1} before averaging (the paper's rule; "
                        "not for `vllm_pairwise` judges, whose score is a probability already).")
    min_votes: int = Field(1, ge=1, description="Pairs with fewer answering judges are left out of the fit.")
    bucket_queries: int = Field(2000, ge=1, description="Queries taken through pairs → judges → Elo "
                                "together: the driver holds one bucket's pairs, calls and votes at a "
                                "time, so its memory does not grow with the number of queries (a run "
                                "with fewer queries is one bucket; results do not depend on it).")
    executor: Literal["ray", "local"] = Field("ray", description="'ray': Ray Data actor pool of judge "
                                              "callers; 'local': the same callers in this process.")
    callers: int = Field(1, ge=0, description="Judge-caller actors (the fewest, when `max_callers` lets "
                         "the pool grow). 0: sized from the endpoints' limits (annotate/sizing.py: the "
                         "calls/s they allow ÷ 150 per caller). However many there are, each endpoint's "
                         "limits hold for all of them together (one shared limit actor).")
    max_callers: int | None = Field(None, ge=1, description="Let the caller pool autoscale from `callers` "
                                    "up to this many actors while calls are waiting (null: a fixed pool).")
    caller_cpus: float = Field(0.25, gt=0, description="CPUs Ray reserves per caller actor (they mostly wait).")
    batch_size: int = Field(256, ge=1, description="Judge calls per batch handed to a caller.")
    batches_in_flight: int = Field(4, ge=1, description="Batches each caller works on at once.")
    flush_rows: int = Field(2000, ge=1, description="Votes buffered before a Parquet part is written.")
    flush_s: float = Field(5.0, gt=0, description="... or seconds since the last write (a kill loses at most this).")
    answer_log: Literal["auto", "caller", "driver"] = Field(
        "auto", description="Who makes answers durable. 'caller': each judge caller appends every "
        "answer to a log in the vote store the moment it arrives, so a kill repays only the calls in "
        "flight; 'driver': callers return batches and the driver stores them (the store directory "
        "need not be reachable from other nodes; a kill also repays the unflushed buffer); 'auto': "
        "'caller' on one machine, 'driver' on a multi-node cluster.")
    retry_failed: bool = Field(True, description="On a re-run, ask again the calls stored as missing votes.")
    swap_probe: float = Field(0.0, ge=0, le=1, description="Share of pairs each judge also sees in the "
                              "other order, to measure position bias (probe votes are not fitted).")
    heldout: float = Field(0.1, ge=0, lt=1, description="Share of pairs held out to compare Bradley-Terry "
                           "and Thurstone likelihoods in the report (0: skip).")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig,
                                           description="Cross-query calibration.")
    output: str | None = Field(None, description="Directory for pairs, votes, zelo.parquet and the "
                               "report (null: <workdir>/annotate).")
    slm: SLMLoopConfig = Field(default_factory=SLMLoopConfig, description="The pairwise-SLM loop: which "
                               "judge the distilled model fills and what share the ensemble judges.")

    @model_validator(mode="after")
    def _caller_range(self) -> "AnnotateConfig":
        if self.max_callers is not None and self.max_callers < self.callers:
            raise ValueError(f"max_callers={self.max_callers} is below callers={self.callers} "
                             "(the pool grows from callers up to max_callers)")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "AnnotateConfig":
        seen: set[str] = set()
        for i, j in enumerate(self.judges):
            if j.name in seen:
                raise ValueError(f"judges[{i}].name={j.name!r} is used twice")
            seen.add(j.name)
        if self.slm.judge is not None:
            named = [j for j in self.judges if j.name == self.slm.judge]
            if not named:
                raise ValueError(f"slm.judge={self.slm.judge!r} names no judge in annotate.judges "
                                 f"({', '.join(j.name for j in self.judges)})")
            if named[0].kind not in ("vllm_pairwise", "simulated"):
                raise ValueError(f"slm.judge={self.slm.judge!r} is a {named[0].kind!r} judge; the distilled "
                                 "SLM runs as a 'vllm_pairwise' judge")
            if len(self.judges) < 2:
                raise ValueError("slm.judge needs an ensemble beside it: annotate.judges has only the SLM")
        return self

