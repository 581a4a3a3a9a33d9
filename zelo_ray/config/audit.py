"""The `audit` section: `zelo audit`, label-free evaluation of any retrieval system."""

from __future__ import annotations

from pydantic import Field, field_validator

from zelo_ray.config.base import Strict

__all__ = ["AuditConfig"]


class AuditConfig(Strict):
    """Sample queries → pool the systems' top results → judge → Elo → per-system scores."""

    sample: int | None = Field(None, ge=1, description="Queries drawn from the query log (null: all of "
                               "them). Repeated texts count once.")
    stratify_by: str | None = Field(None, description="A field of the query log to stratify the sample "
                                    "by: each stratum gets its share of the sample (at least one query). "
                                    "Numbers and ISO dates are cut into `strata` equal time windows; other "
                                    "values are strata as they are.")
    strata: int = Field(4, ge=1, description="Time windows when `stratify_by` holds times or numbers.")
    seed: int = Field(0, description="Seed of the sample and of the bootstrap.")
    pool_depth: int = Field(10, ge=1, description="Each system's top-k per query that is pooled and "
                            "judged; Recall@k uses the same k.")
    grades: list[float] = Field([0.05, 0.10, 0.15], min_length=1, description="Shares of the judged pool "
                                "(all queries together, by calibrated zELO score) graded 3, 2, 1 …; the rest "
                                "are graded 0 (eval/labelfree.py).")
    fail_rank: int = Field(10, ge=1, description="A query fails for a system when the zELO-best document "
                           "of its pool is not in that system's top `fail_rank`.")
    failures_shown: int = Field(20, ge=0, description="Failing queries per system shown with their "
                                "documents side by side in the report (all are in failures.parquet).")
    max_usd: float | None = Field(5.0, ge=0, description="Refuse to start when the estimated cost of "
                                  "the judge calls still to ask exceeds this (null: no cap). The estimate "
                                  "is an upper bound: every answer is priced at the judge's max_tokens.")
    rerank_over: str | None = Field(None, description="The system whose top `rerank_depth` a rerank "
                                    "endpoint (--endpoint) reorders (null: 'hybrid' when present, else "
                                    "the first system).")
    rerank_depth: int = Field(50, ge=1, description="Documents sent to a rerank endpoint per query.")
    endpoint_model: str = Field("rerank", description="`model` field sent to rerank endpoints.")
    endpoint_api_key_env: str | None = Field(None, description="NAME of the environment variable "
                                             "holding the rerank endpoints' bearer key (never the key).")
    endpoint_concurrency: int = Field(8, ge=1, description="Requests in flight to a rerank endpoint.")
    endpoint_timeout_s: float = Field(60.0, gt=0, description="Per-request timeout of a rerank endpoint.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of the confidence intervals.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    output: str | None = Field(None, description="Audit directory: pool, votes, scores, audit.json, "
                               "failures, history.jsonl, report.html (null: <workdir>/audit). Reuse it "
                               "for next week's sample: answers are cached, the history grows.")

    @field_validator("grades")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v) or sum(v) >= 1:
            raise ValueError(f"grades {v}: each share must be positive and all together below 1")
        return v
