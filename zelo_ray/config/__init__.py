"""Typed configuration: one YAML file, every field described, overridable from the CLI.

Example::

    >>> from zelo_ray.config import load_config
    >>> cfg = load_config(None, ["simulate.n_queries=50", "elo.model=bradley_terry"])
    >>> cfg.simulate.n_queries, cfg.elo.model
    (50, 'bradley_terry')

Errors name the file, the line (when the value came from the file) and the field. One module
per concern: ``core`` (graph, Elo, simulation), ``run`` (Ray, data, errors), ``retrieval``,
``judges`` (one class per judge backend), ``annotate``, ``train``, ``serve``, ``audit``, ``root`` (the whole
file) and ``loading`` (YAML, overrides, the generated reference).
"""

from zelo_ray.config.annotate import AnnotateConfig, CalibrationConfig, SLMLoopConfig
from zelo_ray.config.audit import AuditConfig
from zelo_ray.config.core import EloConfig, GraphConfig, SimulateConfig, SimulatedEnsembleConfig
from zelo_ray.config.judges import (JudgeConfig, OpenAIJudgeConfig, SimulatedJudgeConfig,
                                    VLLMPairwiseJudgeConfig)
from zelo_ray.config.loading import ConfigError, default_config_path, load_config, reference_markdown
from zelo_ray.config.retrieval import EvaluateConfig, IndexConfig, RetrieveConfig
from zelo_ray.config.root import ZeloConfig
from zelo_ray.config.run import DataConfig, ErrorsConfig, RayConfig
from zelo_ray.config.serve import AutoscalingSettings, ServeConfig
from zelo_ray.config.train import QueryTowerConfig, RefineConfig, RerankConfig, SplitConfig, TrainConfig, TuneConfig

__all__ = [
    "AnnotateConfig", "AuditConfig", "AutoscalingSettings", "CalibrationConfig", "ConfigError", "DataConfig",
    "EloConfig", "ErrorsConfig", "EvaluateConfig", "GraphConfig", "IndexConfig", "JudgeConfig",
    "OpenAIJudgeConfig", "RayConfig", "RefineConfig", "RerankConfig", "RetrieveConfig",
    "ServeConfig", "SimulateConfig", "SimulatedEnsembleConfig", "SimulatedJudgeConfig",
    "QueryTowerConfig", "SLMLoopConfig", "SplitConfig", "TrainConfig", "TuneConfig", "VLLMPairwiseJudgeConfig", "ZeloConfig",
    "default_config_path", "load_config", "reference_markdown",
]
