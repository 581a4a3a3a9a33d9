"""The training and reranking stages on a run directory (what `zelo train`, `zelo evaluate
--reranker` and `zelo demo` call)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.train.examples import build_groups, doc_texts, query_texts, write_examples
from zelo_ray.train.splits import split_queries

__all__ = ["binary_qrels_table", "evaluate_reranker", "query_split", "run_train_stage", "train_dir"]


def train_dir(cfg: ZeloConfig) -> Path:
    return Path(cfg.train.output or Path(cfg.workdir()) / "train")


def query_split(cfg: ZeloConfig, col) -> dict:
    s = cfg.split
    return split_queries(col, test_split=cfg.data.split, train_split=s.train_split, test_fraction=s.test_fraction,
                         seed=s.seed, max_train_queries=s.max_train_queries)


def binary_qrels_table(candidates: str | Path, qrels: dict, queries: list[str], top_n: int) -> pa.Table:
    """The paper's baseline data: qrels-relevant documents are 1, other first-stage candidates in
    the top ``top_n`` are 0 (hard negatives); relevant documents the first stage missed are added
    with rank 0 (so a ``candidates_per_query`` cut keeps them)."""
    t = pads.dataset(str(candidates), format="parquet").to_table(
        columns=["query_id", "doc_id", "rank"],
        filter=(pc.field("rank") <= top_n) & pc.field("query_id").isin(queries))
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
    from zelo_ray.annotate.run import annotate_dir
    from zelo_ray.retrieval.pipeline import candidates_path

    if cfg.train.target == "binary_qrels":
        return binary_qrels_table(candidates_path(cfg), col.qrels(cfg.split.train_split or cfg.data.split),
                                  train_queries, cfg.annotate.top_n)
    zpath = annotate_dir(cfg) / "zelo.parquet"
    if not zpath.exists():
        raise FileNotFoundError(f"{zpath}: no zELO targets; run `zelo annotate` first (or `zelo demo`)")
    z = pq.read_table(zpath)
    z = z.filter(pc.is_in(z["query_id"], value_set=pa.array(train_queries, pa.string())))
    if z.num_rows == 0:
        raise ValueError(f"{zpath}: none of the {len(train_queries)} training queries were annotated")
    return z


def run_train_stage(cfg: ZeloConfig, *, log=print, split: dict | None = None) -> dict:
    """Build the training groups for the training queries and train; returns the model card."""
    from zelo_ray.data import open_collection
    from zelo_ray.retrieval.indexing import index_paths
    from zelo_ray.train.trainer import train_reranker

    col = open_collection(index_paths(cfg).data)
    split = split or query_split(cfg, col)
    table = training_table(cfg, col, split["train"])
    groups = build_groups(table, query_texts(col), doc_texts(col, table["doc_id"].to_pylist()),
                          group_size=cfg.train.group_size, candidates_per_query=cfg.train.candidates_per_query,
                          seed=cfg.train.seed)
    out = train_dir(cfg)
    examples = write_examples(groups, out / f"examples-{cfg.train.target}.parquet")
    card = {"dataset": col.name, "train_queries": len(split["train"]), "split": split["source"],
            "target": cfg.train.target, "label": "SIMULATION" if _simulated(cfg) else None}
    return train_reranker(cfg.train, examples, out, card=card, log=log, ray_cfg=cfg.ray)


def _simulated(cfg: ZeloConfig) -> bool:
    return cfg.train.target == "zelo" and any(j.kind == "simulated" for j in cfg.annotate.judges)


def evaluate_reranker(cfg: ZeloConfig, col, queries: list[str], checkpoints: dict[str, str], *, log=print,
                      out: Path | None = None) -> dict:
    """BM25, dense, hybrid and each checkpoint's reranking of the hybrid top-``rerank.depth``, on
    ``queries``, with paired bootstrap CIs and deltas against hybrid."""
    from zelo_ray.eval.evaluate import evaluate_runs, rankings_from_candidates
    from zelo_ray.retrieval.pipeline import candidates_path
    from zelo_ray.train.rerank import rankings_from_reranked, rerank_candidates

    qrels = col.qrels(cfg.data.split)
    runs = rankings_from_candidates(candidates_path(cfg), queries, cfg.evaluate.depth)
    for name, ckpt in checkpoints.items():
        log(f"      rerank the top-{cfg.rerank.depth} of {len(queries)} queries with {name} ({ckpt})")
        t = rerank_candidates(col, candidates_path(cfg), ckpt, queries, depth=cfg.rerank.depth,
                              batch_size=cfg.rerank.batch_size, max_length=cfg.rerank.max_length, log=log,
                              out=(out / f"reranked-{name}.parquet") if out else None)
        runs[name] = {q: d[:cfg.evaluate.depth] for q, d in rankings_from_reranked(t).items()}
    e = cfg.evaluate
    return evaluate_runs(qrels, runs, queries, n_boot=e.bootstrap, confidence=e.confidence, seed=e.seed,
                         versus="hybrid")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)
