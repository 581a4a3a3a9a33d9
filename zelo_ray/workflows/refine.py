"""The refinement pass (zELO's "RLHF" stage), where human labels exist.

For each training query with qrels, take its highest-labelled judged candidate d_h. If the
trained reranker ranks d_h at r > ``refine.threshold``, the pair (d_h, the document the reranker
put at r − 1) is judged by the same ensemble, added to the query's pairs, Elo is refitted and
the model retrained. Votes already paid for are reused (the annotate stage's cache), so only
the new pairs cost judge calls.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout

__all__ = ["failing_queries", "run_refine"]


def failing_queries(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]], threshold: int
                    ) -> dict[str, tuple[str, str, int]]:
    """``{query: (d_h, document at r − 1, r)}`` for queries whose best-labelled document sits
    below ``threshold`` (pure: ranked lists and labels in)."""
    out = {}
    for q, docs in ranked.items():
        labels = qrels.get(q, {})
        best = max((labels.get(d, 0) for d in docs), default=0)
        if best <= 0:
            continue
        rank = next(i for i, d in enumerate(docs) if labels.get(d, 0) == best) + 1
        if rank > threshold:
            out[q] = (docs[rank - 1], docs[rank - 2], rank)
    return out


def _ranked(cfg, col, ckpt: str, queries: list[str]) -> dict[str, list[str]]:
    from zelo_ray.scoring.rerank import rankings_from_reranked, rerank_candidates

    t = rerank_candidates(col, layout(cfg).candidates, ckpt, queries, depth=cfg.annotate.top_n,
                          batch_size=cfg.rerank.batch_size, max_length=cfg.rerank.max_length, log=lambda *_: None)
    return rankings_from_reranked(t)


def run_refine(cfg: ZeloConfig, *, log=print) -> dict:
    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.data import open_collection
    from zelo_ray.eval.rerank import evaluate_reranker
    from zelo_ray.eval.splits import query_split, training_qrels_split
    from zelo_ray.train.stage import run_train_stage

    col = open_collection(layout(cfg).data)
    split = query_split(cfg, col)
    qsplit = training_qrels_split(cfg, col)
    qrels = col.qrels(qsplit)
    qt = pq.read_table(col.qrels_path(qsplit))
    train_qrels = qt.filter(pc.is_in(qt["query_id"], value_set=pa.array(split["train"])))
    ckpt = str(layout(cfg).train / "model")
    if not Path(ckpt).exists():
        raise FileNotFoundError(f"{ckpt}: no trained model; run `zelo train` first")
    thr = cfg.refine.threshold
    before = failing_queries(_ranked(cfg, col, ckpt, split["train"]), qrels, thr)
    report = {"threshold": thr, "train_queries": len(split["train"]), "rounds": []}
    base_metrics = evaluate_reranker(cfg, col, split["test"], {"reranker": ckpt}, log=log)["reranker"]
    refine_path = layout(cfg).annotate / "refine_pairs.parquet"
    failing, current = before, ckpt
    for rnd in range(cfg.refine.rounds):
        t0 = time.perf_counter()
        log(f"[refine] round {rnd + 1}: {len(failing)}/{len(split['train'])} training queries rank their best "
            f"labelled document below {thr}; judging those pairs")
        old = pq.read_table(refine_path).to_pylist() if refine_path.exists() else []
        new = old + [{"query_id": q, "doc_a": dh, "doc_b": above} for q, (dh, above, _) in sorted(failing.items())]
        pq.write_table(pa.Table.from_pylist(new, schema=pa.schema([("query_id", pa.string()), ("doc_a", pa.string()),
                                                                   ("doc_b", pa.string())])), refine_path)
        ann = run_annotate(cfg, log_fn=log, qrels=train_qrels, queries=split["train"])
        cfg = cfg.model_copy(deep=True)
        cfg.train.output = str(layout(cfg).train.parent / f"train-refined-{rnd + 1}")
        run_train_stage(cfg, log=log, split=split)
        current = str(layout(cfg).train / "model")
        failing = failing_queries(_ranked(cfg, col, current, split["train"]), qrels, thr)
        report["rounds"].append({"pairs_added": len(new) - len(old), "judge_calls_asked": ann["asked_this_run"],
                                 "failing_after": len(failing), "model": current,
                                 "wall_s": round(time.perf_counter() - t0, 1)})
    after_metrics = evaluate_reranker(cfg, col, split["test"], {"reranker": current}, log=log)["reranker"]
    report.update(failing_before=len(before), failing_after=len(failing),
                  test_ndcg10_before=base_metrics["ndcg@10"], test_ndcg10_after=after_metrics["ndcg@10"])
    log(f"[refine] failing training queries {len(before)} → {len(failing)}; test nDCG@10 "
        f"{base_metrics['ndcg@10']['mean']:.3f} → {after_metrics['ndcg@10']['mean']:.3f}")
    return report
