"""Where a run happens: the Ray connection, the collection and run directory, failed records."""

from __future__ import annotations

from pydantic import Field

from zelo_ray.config.base import Strict

__all__ = ["DataConfig", "ErrorsConfig", "RayConfig"]


class RayConfig(Strict):
    """How the driver connects to Ray."""

    address: str | None = Field(
        None, description="Ray address ('auto' for a running cluster, 'ray://…'); null starts a local "
        "instance (inside `ray job submit` the job's cluster is used automatically).")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local instance (null: all).")
    metrics_export_port: int | None = Field(
        None, ge=1, le=65535, description="Port of a local instance's Prometheus metrics endpoint "
        "(`/metrics`: Ray's, Ray Serve's and zelo's own; null: a free port Ray picks). A cluster sets it "
        "with `ray start --metrics-export-port`.")


class DataConfig(Strict):
    """Which collection to use and where a run's files go."""

    dataset: str = Field(
        "cranfield", description="A BEIR folder, a name under $ZELO_DATASETS (default "
        "../shared/datasets), or an ir_datasets id (prefix 'irds:' to force it).")
    split: str = Field("test", description="qrels split used for evaluation.")
    workdir: str = Field(
        "runs/{dataset}", description="Run directory ({dataset} is replaced by the collection "
        "name): data/ (Parquet), index/, candidates.parquet, metrics.json.")
    output_uri: str | None = Field(
        None, description="Durable copy of the run directory (local path, file://, s3://, gs://…): "
        "pulled before a stage so a fresh cluster resumes, pushed after it (also after a failure); "
        "{dataset} expands. On a multi-node cluster whose nodes share no mount it is also where "
        "workers read the run's files and Ray Train keeps its checkpoints (object storage: s3://, gs://).")
    storage_attempts: int = Field(
        5, ge=1, description="Tries of each copy to or from data.output_uri before the stage fails "
        "naming the URI (each try includes the cloud SDK's own retries; a throttled or dropped "
        "request is tried again after a backoff).")
    storage_backoff_s: float = Field(
        1.0, ge=0, description="First wait between tries of a copy to or from data.output_uri "
        "(doubling, with jitter, at most 30 s).")
    shared_workdir: bool = Field(
        False, description="data.workdir is a mount every Ray node sees (NFS, EFS, a shared volume): "
        "workers then read it directly instead of through data.output_uri.")


class ErrorsConfig(Strict):
    """Per-record fault isolation: a record that raises is listed in its stage's errors table and skipped."""

    max_fraction: float = Field(0.01, ge=0, le=1, description="Fail a stage when more than this share "
                                "of its records failed (what succeeded is kept; a re-run retries only "
                                "the failed records).")
    inject: list[str] = Field(default_factory=list, description="Testing: records forced to fail, as "
                              "'<stage>:<record id>' (stages: retrieve, annotate, examples, rerank; "
                              "annotate ids are '<pair_id>/<judge>').")

