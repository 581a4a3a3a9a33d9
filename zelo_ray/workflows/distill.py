"""`zelo distill`: the ensemble's soft outcome on every judged pair → a pairwise small LM that
vLLM serves as a judge (:mod:`zelo_ray.judges.vllm_pairwise`), the paper's distillation step."""

from __future__ import annotations

import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout

__all__ = ["run_distill"]


def run_distill(cfg: ZeloConfig, *, base: str, output: str | None = None, epochs: float = 1.0,
                batch_size: int = 8, lr: float = 5e-5, max_length: int = 512,
                max_pairs: int | None = None) -> dict:
    """Train ``base`` (a local causal-LM folder) on ``<annotate>/pair_outcomes.parquet``; the
    model lands in ``output`` (default ``<workdir>/pairwise-slm``)."""
    from zelo_ray.data import open_collection
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.train.pairwise import pair_rows, train_pairwise

    run = layout(cfg)
    path = run.annotate / "pair_outcomes.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no judged pairs; run `zelo annotate` first")
    t = pq.read_table(path)
    if max_pairs:
        t = t.slice(0, max_pairs)
    col = open_collection(run.data)
    rows = pair_rows(t, query_texts(col), doc_texts(col, t["doc_a"].to_pylist() + t["doc_b"].to_pylist()))
    return train_pairwise(rows, base=base, out=output or str(run.pairwise), epochs=epochs,
                          batch_size=batch_size, lr=lr, max_length=max_length)
