"""`zelo evaluate`: the first stage's rankings (BM25, dense, hybrid) and, with checkpoints, their
reranking of the hybrid top-``rerank.depth``, on the held-out test queries or all judged ones,
with bootstrap CIs (paired against hybrid for rerankers)."""

from __future__ import annotations

from pathlib import Path

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout

__all__ = ["run_evaluate"]


def run_evaluate(cfg: ZeloConfig, *, run: str | Path | None = None, rerankers: list[str] = (),
                 queries: str = "test", log=print) -> tuple[dict, str, list[str]]:
    """The report, a one-line title and the systems it holds, in the order to show them.
    ``run``: a candidates file other than the run directory's (first stage only)."""
    from zelo_ray.data import prepare
    from zelo_ray.eval.evaluate import evaluate_with_config

    col = prepare(cfg.data.dataset, layout(cfg).data)
    if not rerankers:
        report = evaluate_with_config(col, cfg.data.split, run or layout(cfg).candidates, cfg.evaluate)
        meta = report["meta"]
        title = (f"{meta['dataset']} qrels/{meta['split']}: {meta['judged_queries']} judged queries "
                 f"({meta['excluded_queries_without_judgments']} without judgments excluded); "
                 f"{int(meta['confidence'] * 100)}% bootstrap CIs over {meta['bootstrap']} resamples")
        return report, title, ["bm25", "dense", "hybrid"]
    from zelo_ray.eval.rerank import evaluate_reranker
    from zelo_ray.eval.splits import query_split

    split = query_split(cfg, col)
    ids = split["test"] if queries == "test" else sorted(set(split["train"]) | set(split["test"]))
    ckpts = {f"reranker{i or ''}": c for i, c in enumerate(rerankers)}
    report = evaluate_reranker(cfg, col, ids, ckpts, log=log)
    report["meta"] = {"dataset": col.name, "split": cfg.data.split, "queries": queries, "n_queries": len(ids),
                      "checkpoints": ckpts, "rerank_depth": cfg.rerank.depth}
    title = (f"{col.name} qrels/{cfg.data.split}: {len(ids)} {queries} queries; reranking the hybrid "
             f"top-{cfg.rerank.depth}")
    return report, title, ["bm25", "dense", "hybrid", *(r for c in ckpts for r in (c, f"{c}_model_only"))]
