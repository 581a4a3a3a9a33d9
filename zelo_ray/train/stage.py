"""The training stage on a run directory (what `zelo train` and `zelo demo` call): the training
queries' rows, the held-out validation queries, training, and the served function's BM25 weight.
Reranking and evaluation live in :mod:`zelo_ray.eval.rerank`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.faults import ErrorLog, FaultInjector, check_failures
from zelo_ray.train.examples import write_groups
from zelo_ray.train.query_tower import effective_config
from zelo_ray.eval.splits import query_split, training_qrels_split
from zelo_ray.train.validation import split_validation, validation_grades, validation_scores, validation_set
from zelo_ray.layout import layout
from zelo_ray.reuse import saved_if_unchanged

__all__ = ["base_checkpoint", "binary_qrels_table", "choose_fusion", "run_train_stage", "split_training_table",
           "training_examples"]


def binary_qrels_table(candidates: str | Path, qrels: dict, queries: list[str], top_n: int) -> pa.Table:
    """The paper's baseline data: qrels-relevant documents are 1, other first-stage candidates in
    the top ``top_n`` are 0 (hard negatives); relevant documents the first stage missed are added
    with rank 0 (so a ``candidates_per_query`` cut keeps them)."""
    t = pads.dataset(str(candidates), format="parquet").to_table(
        columns=["query_id", "doc_id", "rank"],
        filter=(pc.field("rank") <= top_n) & pc.field("query_id").isin(pa.array(queries, pa.string())))
    q, d, r = t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["rank"].to_pylist()
    seen = set(zip(q, d))
    for qid in queries:
        for doc, rel in qrels.get(qid, {}).items():
            if rel > 0 and (qid, doc) not in seen:
                q.append(qid), d.append(doc), r.append(0)
    target = [1.0 if qrels.get(a, {}).get(b, 0) > 0 else 0.0 for a, b in zip(q, d)]
    return pa.table({"query_id": q, "doc_id": d, "rank": pa.array(r, pa.int32()),
                     "target": pa.array(target, pa.float32()),
                     "elo": pa.array([4.0 * t - 2.0 for t in target], pa.float32())})


def training_table(cfg: ZeloConfig, col, train_queries: list[str]) -> pa.Table:
    """The training rows of ``train_queries``: their zELO table, or the binary-qrels baseline's."""
    if cfg.train.target == "binary_qrels":
        return binary_qrels_table(layout(cfg).candidates, col.qrels(training_qrels_split(cfg, col)),
                                  train_queries, cfg.annotate.top_n)
    zpath = layout(cfg).annotate / "zelo.parquet"
    if not zpath.exists():
        raise FileNotFoundError(f"{zpath}: no zELO targets; run `zelo annotate` first (or `zelo demo`)")
    z = pq.read_table(zpath)
    z = z.filter(pc.is_in(z["query_id"], value_set=pa.array(train_queries, pa.string())))
    if z.num_rows == 0:
        raise ValueError(f"{zpath}: none of the {len(train_queries)} training queries were annotated")
    return z


def split_training_table(cfg: ZeloConfig, col, table: pa.Table) -> tuple[pa.Table, dict | None]:
    """(the rows that fit the model, the validation set of the held-out training queries or None)."""

    fit_q, val_q = split_validation(sorted(set(table["query_id"].to_pylist())), cfg.train.val_fraction,
                                    seed=cfg.split.seed + 2)
    if not val_q:
        return table, None
    validation = validation_set(col, layout(cfg).candidates, val_q, validation_grades(table, val_q), cfg.rerank.depth)
    validation["elo"] = validation_scores(table, val_q)
    return table.filter(pc.is_in(table["query_id"], value_set=pa.array(fit_q, pa.string()))), validation


def run_train_stage(cfg: ZeloConfig, *, log=print, split: dict | None = None) -> dict:
    """Build the training groups for the training queries and train; returns the model card."""
    from zelo_ray.data import open_collection
    from zelo_ray.train.trainer import train_reranker

    col = open_collection(layout(cfg).data)
    split = split or query_split(cfg, col)
    out = layout(cfg).train
    tcfg = effective_config(cfg.train)
    examples, validation, failures = training_examples(cfg, col, split, log=log)
    card = {"dataset": col.name, "train_queries": len(split["train"]), "split": split["source"],
            "target": cfg.train.target, "label": "SIMULATION" if _simulated(cfg) else None,
            "failed_training_queries": failures["failed"]}
    card = train_reranker(tcfg, examples, out, card=card, log=log, ray_cfg=cfg.ray, validation=validation,
                          run_cfg=cfg, inject=cfg.errors.inject)
    if cfg.train.fusion and validation:
        card["fusion"] = choose_fusion(cfg, col, out / "model", card, validation, log)
        base = base_checkpoint(tcfg, out / "base")
        log("      fusion_only (the untrained base, same token budget, its own weight chosen the same way):")
        choose_fusion(cfg, col, base, json.loads((base / "zelo_card.json").read_text()), validation, log)
    elif cfg.train.fusion:
        log("      fusion with BM25 needs validation queries (train.val_fraction > 0); serving the model alone")
    return card


def training_examples(cfg: ZeloConfig, col, split: dict, *, log=print,
                      out: Path | None = None) -> tuple[Path, dict | None, dict]:
    """The training queries' examples file (under ``out``, default the run's train directory),
    the validation set of the held-out training queries (None without), and the failure summary
    of the queries that could not become examples (listed in the errors table beside them)."""
    table, validation = split_training_table(cfg, col, training_table(cfg, col, split["train"]))
    if validation:
        log(f"      {len(set(table['query_id'].to_pylist()))} training queries fit the model, "
            f"{len(validation['query_ids'])} held out validate it (against their own zELO scores)")
    out = out or layout(cfg).train
    tcfg = effective_config(cfg.train)
    errors = ErrorLog(out / f"examples-{cfg.train.target}.errors.parquet", "examples")
    errors.reset()
    injector = FaultInjector("examples", cfg.errors.inject)
    if tcfg.towers == "query":
        examples, validation = _query_tower_examples(cfg, tcfg, col, table, validation, errors, injector, out, log)
    else:
        # written chunk by chunk of queries: the driver never holds every training document's text
        examples = write_groups(table, col, out / f"examples-{cfg.train.target}.parquet",
                                group_size=tcfg.group_size, candidates_per_query=tcfg.candidates_per_query,
                                seed=tcfg.seed, errors=errors, injector=injector)
    failed = errors.finish()
    failures = check_failures(failed, len(set(table["query_id"].to_pylist())), cfg.errors.max_fraction,
                              stage="examples", path=errors.path, what="training queries")
    if failed.num_rows:
        log(f"      {failed.num_rows:,} training queries left out (listed in {errors.path}): "
            f"{failures['most_common']}")
    return examples, validation, failures


def _query_tower_examples(cfg: ZeloConfig, tcfg, col, table: pa.Table, validation: dict | None, errors, injector,
                          out: Path, log) -> tuple[Path, dict | None]:
    """One row per training query with its candidates' document vectors (the index's when they
    are the document tower's), and the validation set with its vectors."""
    from zelo_ray.scoring.models import load_reranker
    from zelo_ray.train.query_tower import attach_validation_vectors, write_query_examples
    from zelo_ray.scoring.vectors import seed_from_index

    model = load_reranker(tcfg.base, "bi_encoder", towers="query")
    seeded = seed_from_index(model, layout(cfg).dense, col.corpus_path, max_length=tcfg.max_length, log=log)
    log(f"      query-tower training: documents keep the base model's vectors ({seeded:,} read from the index), "
        f"the query encoder and a map on the vectors learn ({tcfg.loss}, τ {tcfg.query_tower.temperature})")
    examples = write_query_examples(table, col, out / f"examples-query-{cfg.train.target}.parquet",
                                    model, max_length=tcfg.max_length,
                                    candidates_per_query=tcfg.candidates_per_query, seed=tcfg.seed,
                                    errors=errors, injector=injector)
    if validation:
        validation = attach_validation_vectors(validation, model, max_length=tcfg.max_length)
    return examples, validation


def base_checkpoint(tcfg, out: Path) -> Path:
    """The untrained base saved as a checkpoint of the same shape and token budget as the trained
    model (towers included: a zero map is the identity), so the ``fusion_only`` and
    ``base_model_only`` rows are scored exactly as the trained model is."""
    from zelo_ray.scoring.kinds import CARD
    from zelo_ray.scoring.models import load_reranker, save_reranker

    card = {"note": "untrained base (the fusion_only and base_model_only rows)",
            "train_config": {"max_length": tcfg.max_length}, "base": tcfg.base, "towers": tcfg.towers}
    if (out / CARD).exists() and {k: v for k, v in json.loads((out / CARD).read_text()).items()
                                  if k in card} == card:
        return out
    model = load_reranker(tcfg.base, tcfg.kind, towers="query" if tcfg.towers == "query" else None)
    save_reranker(model, out, card)
    return out


def choose_fusion(cfg: ZeloConfig, col, model_dir: Path, card: dict, validation: dict, log=print) -> dict:
    """Choose the BM25 weight of the served function once per trained model (kept on a re-run)."""
    from zelo_ray.retrieval.lexical import TermStats
    from zelo_ray.scoring.fusion import FUSION_FILE, fit_fusion
    from zelo_ray.scoring.rerank import checkpoint_max_length
    from zelo_ray.scoring.vectors import scoring_model

    path = model_dir / FUSION_FILE
    key = ["pearson-v1", card.get("fingerprint"), card.get("step"), cfg.index.bm25_tokenizer, cfg.rerank.depth,
           cfg.rerank.max_length, validation["query_ids"]]
    info = saved_if_unchanged(path, key)
    if info is not None:
        log(f"      fusion: BM25 weight {info['bm25_weight']} (chosen by an earlier run)")
        return info
    info = fit_fusion(model_dir, validation,
                      lambda: TermStats.from_corpus(col.corpus_path, cfg.index.bm25_tokenizer, log=log),
                      max_length=checkpoint_max_length(str(model_dir), cfg.rerank.max_length),
                      batch_size=cfg.rerank.batch_size, log=log, key=key,
                      model=scoring_model(cfg, col, model_dir, log=log))
    return info


def _simulated(cfg: ZeloConfig) -> bool:
    return cfg.train.target == "zelo" and any(j.simulated for j in cfg.annotate.judges)
