"""The ``serve`` section of the configuration: what is served, input limits, batching, scaling."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from zelo_ray.config.base import Backend, Strict

__all__ = ["AutoscalingSettings", "ServeConfig"]


class AutoscalingSettings(Strict):
    """Ray Serve autoscaling of the reranker replicas (replaces ``num_replicas`` when set)."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept running.")
    max_replicas: int = Field(4, ge=1, description="Most replicas (bounded by the GPUs/CPUs the cluster has).")
    target_ongoing_requests: float = Field(16.0, gt=0, description="Requests in flight per replica Serve "
                                           "aims for; more → scale up. Keep it near a full batch's worth "
                                           "of requests so batches fill before a new replica starts.")

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas={self.max_replicas} < min_replicas={self.min_replicas}")
        return self


class ServeConfig(Strict):
    """Serving a reranker with Ray Serve (``zelo serve``, ``serve run``)."""

    checkpoint: str | None = Field(None, description="Model folder (local path, or s3:// / gs:// / file:// "
                                   "URI copied to each replica's node once): a zelo-ray checkpoint, any "
                                   "cross-encoder (one-logit sequence-classification head) or a "
                                   "zerank-style causal LM read at the \" yes\" token (null: "
                                   "<train.output>/model).")
    model_name: str = Field("zelo-reranker", min_length=1, description="The name clients send as `model` "
                            "and `/v1/models` lists.")
    model_aliases: list[str] = Field(default_factory=list, description="Other names `/v1/models` lists "
                                     "(e.g. `rerank-v3.5`, `zerank-1`); with `strict_model` the only "
                                     "other accepted `model` values.")
    strict_model: bool = Field(False, description="Answer only requests naming `model_name` or an alias "
                               "(others → 404), for deployments serving several models behind one "
                               "router. Off: any `model` value is answered by this model (a client "
                               "that switched only its base URL sends its old provider's name); "
                               "the mapping is logged once per name.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when the replica "
                                                   "has a GPU.")
    backend: Backend = Field("torch", description="Inference backend: 'torch' (PyTorch; every model kind), "
                             "'onnx' (ONNX Runtime, the folder exported once and cached in <checkpoint>/onnx; "
                             "scores equal torch's to 1e-4) or 'onnx-int8' (that graph with int8 weights: "
                             "about 2x the throughput on a CPU at a measured quality cost; CPU only). "
                             "Encoders only; docs/serving.md says when to pick which.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Inference precision (auto: bfloat16 on CUDA, float32 on CPU).")
    max_documents: int = Field(1000, ge=1, description="Most documents per request (more → 400).")
    max_request_bytes: int = Field(16 * 2**20, ge=1024, description="Largest request body accepted "
                                   "(larger → 413).")
    max_query_tokens: int = Field(128, ge=1, description="Query tokens kept (longer queries are cut).")
    max_tokens_per_doc: int = Field(512, ge=1, description="Token budget per document: longer documents "
                                    "are truncated (a request may ask for less with "
                                    "`max_tokens_per_doc`, never more). Also capped by the model's "
                                    "maximum length.")
    long_documents: Literal["chunk_max", "truncate"] = Field(
        "chunk_max", description="A document longer than one pair's token budget: 'chunk_max' scores "
        "overlapping windows of it in the same batches and keeps the best window's score (what hosted "
        "rerankers do); 'truncate' scores its first `max_tokens_per_doc` tokens only. A request can "
        "opt out per call (TEI `truncate: true`, Cohere v2 `max_tokens_per_doc`).")
    window_overlap_tokens: int = Field(64, ge=0, description="Tokens two neighbouring windows share (at "
                                       "most a quarter of a window).")
    max_windows_per_doc: int = Field(64, ge=1, description="Most windows scored per document (spread "
                                     "evenly over a longer one); Cohere v1's `max_chunks_per_doc` may "
                                     "ask for fewer.")
    fusion: bool = Field(True, description="Serve the checkpoint's fused score (model + BM25 with the "
                         "weight and corpus statistics `zelo train` stored in it: the function "
                         "`reranker` measured); false: the model's score alone (`reranker_model_only`).")
    batching: bool = Field(True, description="Batch (query, document) pairs across concurrent requests "
                           "with `@serve.batch` (false: each request is scored on its own).")
    max_batch_tokens: int | None = Field(None, ge=64, description="Token budget of one forward pass: "
                                         "batches are formed and split by token count (rows × padded "
                                         "length), not by document count. null: 4,096 on a CPU replica "
                                         "(bigger calls are slower per token there), 16,384 on a GPU.")
    max_batch_rows: int = Field(256, ge=1, description="Most (query, document) pairs in one forward pass.")
    batch_wait_timeout_s: float = Field(0.005, ge=0, description="How long a batch waits for more "
                                        "requests before running.")
    max_ongoing_requests: int = Field(64, ge=1, description="Requests one replica accepts at once; must be "
                                      "large enough for concurrent requests to fill a batch.")
    max_pending_tokens: int | None = Field(None, ge=64, description="Admission control: tokens a replica "
                                           "accepts and has not yet scored; a request that would go past "
                                           "it is answered at once with `overload_status` and "
                                           "`Retry-After` in its API's error body (an idle replica always "
                                           "takes one request, whatever its size). null: twice the forward "
                                           "pass's token budget (`max_batch_tokens`), so an accepted "
                                           "request waits behind at most about one other's work.")
    max_queued_requests: int = Field(64, ge=-1, description="Requests Ray Serve's proxy holds for a "
                                     "replica that has `max_ongoing_requests` in flight; past it the "
                                     "proxy answers `overload_status` with `Retry-After` (its own plain "
                                     "body). -1: unbounded (Ray's default; a burst then waits without "
                                     "limit).")
    overload_status: Literal[429, 503] = Field(429, description="Status of a shed request: 429 (Cohere's "
                                               "and TEI's overload answer; their clients back off) or 503.")
    retry_after_s: float = Field(1.0, ge=0, description="`Retry-After` of a shed request, seconds "
                                 "(rounded up to whole seconds on the wire).")
    num_replicas: int = Field(1, ge=1, description="Fixed replica count (ignored when `autoscaling` is set).")
    autoscaling: AutoscalingSettings | None = Field(None, description="Autoscaling bounds (null: fixed "
                                                    "`num_replicas`).")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (1 on a GPU node).")
    host: str = Field("127.0.0.1", description="HTTP bind address (`zelo serve`); 0.0.0.0 to listen on "
                      "every interface.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port (`zelo serve`).")
    api_keys_env: str = Field("ZELO_API_KEYS", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                              description="Environment variable holding comma-separated bearer tokens; "
                              "when it is set and non-empty every rerank call needs "
                              "`Authorization: Bearer <token>` (401 otherwise). Keys are never logged.")

    def batch_tokens(self, device_type: str) -> int:
        """``max_batch_tokens``, or its default for a replica scoring on ``device_type``: on a CPU
        forward tokens/s falls beyond ~8 pairs of 512 tokens per call (docs/benchmarks.md §9)."""
        if self.max_batch_tokens:
            return self.max_batch_tokens
        default = 16384 if device_type == "cuda" else 4096
        # one call must hold the longest pair the other settings allow
        return max(default, self.max_tokens_per_doc + self.max_query_tokens + 8)

    def pending_tokens(self, device_type: str) -> int:
        """``max_pending_tokens``, or its default: two forward passes' worth of tokens."""
        return self.max_pending_tokens or 2 * self.batch_tokens(device_type)

    @model_validator(mode="after")
    def _consistent(self):
        if self.max_batch_tokens and self.max_batch_tokens < self.max_tokens_per_doc + self.max_query_tokens:
            raise ValueError(f"max_batch_tokens={self.max_batch_tokens} cannot hold one pair of "
                             f"max_query_tokens + max_tokens_per_doc = "
                             f"{self.max_query_tokens + self.max_tokens_per_doc} tokens")
        if self.batching and self.max_ongoing_requests < 2:
            raise ValueError("batching needs max_ongoing_requests >= 2 (one request in flight cannot "
                             "be batched with another)")
        return self
