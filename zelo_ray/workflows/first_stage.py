"""First-stage retrieval as one job (`zelo first-stage`, pipelines/retrieve.py): index
(restartable) → retrieve → evaluate BM25, dense and hybrid when the split has qrels."""

from __future__ import annotations

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout

__all__ = ["run_first_stage"]


def run_first_stage(cfg: ZeloConfig) -> dict:
    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import evaluate_with_config
    from zelo_ray.retrieval.indexing import run_index
    from zelo_ray.retrieval.pipeline import run_retrieve

    report = {"index": run_index(cfg), "retrieve": run_retrieve(cfg)}
    col = open_collection(layout(cfg).data)
    if cfg.data.split in col.splits:
        report["metrics"] = evaluate_with_config(col, cfg.data.split, report["retrieve"]["candidates"],
                                                 cfg.evaluate)
    return report
