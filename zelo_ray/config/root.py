"""The whole configuration file: one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from zelo_ray.config.annotate import AnnotateConfig
from zelo_ray.config.audit import AuditConfig
from zelo_ray.config.base import Strict
from zelo_ray.config.core import EloConfig, GraphConfig, SimulateConfig
from zelo_ray.config.retrieval import EvaluateConfig, IndexConfig, RetrieveConfig
from zelo_ray.config.run import DataConfig, ErrorsConfig, RayConfig
from zelo_ray.config.serve import ServeConfig
from zelo_ray.config.train import RefineConfig, RerankConfig, SplitConfig, TrainConfig, TuneConfig

__all__ = ["RENAMED_SECTIONS", "ZeloConfig", "renamed_message"]

RENAMED_SECTIONS = {"judges": "simulate.ensemble"}
"""Top-level sections that moved: old name → new place."""


def renamed_message(old: str) -> str:
    new = RENAMED_SECTIONS[old]
    extra = (" (the ensemble that judges a collection is `annotate.judges`)" if old == "judges" else "")
    return f"the top-level `{old}:` section is now `{new}`: move its fields there{extra}"


class ZeloConfig(Strict):
    """Top-level configuration file."""

    simulate: SimulateConfig = Field(default_factory=SimulateConfig, description="Simulation demo.")
    graph: GraphConfig = Field(default_factory=GraphConfig, description="Pair graph per query.")
    elo: EloConfig = Field(default_factory=EloConfig, description="Elo fit.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    data: DataConfig = Field(default_factory=DataConfig, description="Collection and run directory.")
    index: IndexConfig = Field(default_factory=IndexConfig, description="Indexing.")
    retrieve: RetrieveConfig = Field(default_factory=RetrieveConfig, description="Retrieval.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluation.")
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig, description="Judging and Elo.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Training / test queries.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Reranker training.")
    rerank: RerankConfig = Field(default_factory=RerankConfig, description="Reranking with a checkpoint.")
    refine: RefineConfig = Field(default_factory=RefineConfig, description="Refinement pass.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="Hyperparameter search.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving the reranker.")
    audit: AuditConfig = Field(default_factory=AuditConfig, description="Label-free audit of retrieval systems.")
    errors: ErrorsConfig = Field(default_factory=ErrorsConfig, description="Failed records.")

    @model_validator(mode="before")
    @classmethod
    def _renamed_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old in RENAMED_SECTIONS:
                if old in data:
                    raise ValueError(renamed_message(old))
        return data

    def dataset_name(self) -> str:
        """A file-name-safe collection name (what ``{dataset}`` expands to)."""
        spec = self.data.dataset
        if spec.startswith("irds:"):
            return spec[5:].replace("/", "-")
        return Path(spec.rstrip("/")).name or spec

    def workdir(self) -> str:
        """``data.workdir`` with ``{dataset}`` replaced by a file-name-safe collection name."""
        return self.data.workdir.replace("{dataset}", self.dataset_name())

    def output_uri(self) -> str | None:
        """``data.output_uri`` with ``{dataset}`` expanded (null: no durable copy)."""
        uri = self.data.output_uri
        return uri.replace("{dataset}", self.dataset_name()) if uri else None
