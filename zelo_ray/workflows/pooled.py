"""One reranker for many collections (what zerank does): train once on the union of several
runs' training queries, then serve that single model on each collection.

Each collection contributes the examples its own train stage would write (its training queries'
zELO targets, with its own index's document vectors for a query tower) and its held-out
validation queries; ids are prefixed with the collection's name so that two collections' ``"1"``
never meet in a batch. One model is trained on the pooled examples, the checkpoint chosen on the
pooled validation queries. Per collection, the served function's BM25 weight is chosen on that
collection's validation queries by the rule a per-collection model uses (a deployment setting,
like the index it fuses with); the model's weights are the same everywhere.

Example (after ``zelo demo`` ran on each collection)::

    cfgs = {ds: load_config(None, [f"data.dataset={ds}", f"data.workdir=runs/{ds}"]) for ds in ("cranfield", "med")}
    pooled = train_pooled(cfgs, Path("runs/pooled"))
    for ds, cfg in cfgs.items():
        served = pooled_for(cfg, pooled, ds)   # runs/pooled/<ds>/model, fusion chosen for ds
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.data import open_collection
from zelo_ray.layout import layout

__all__ = ["pool_examples", "pool_validation", "pooled_for", "train_pooled"]

SEP = "/"


def _prefixed(values: pa.Array, prefix: str) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), values, "")


def pool_examples(parts: dict[str, Path], out: Path) -> Path:
    """One examples file of every part's rows, query and document ids prefixed ``<name>/``;
    the rows of the parts interleave in a fixed order so that every step sees several domains."""
    import numpy as np

    tables = []
    for name, path in parts.items():
        t = pq.read_table(path)
        prefix = f"{name}{SEP}"
        doc_ids = t["doc_ids"].combine_chunks()
        flat = _prefixed(doc_ids.flatten(), prefix)
        t = t.set_column(t.schema.get_field_index("query_id"), "query_id", _prefixed(t["query_id"], prefix))
        t = t.set_column(t.schema.get_field_index("doc_ids"), "doc_ids",
                         pa.ListArray.from_arrays(doc_ids.offsets, flat))
        tables.append(t)
    pooled = pa.concat_tables(tables)
    order = np.random.default_rng(0).permutation(pooled.num_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    pq.write_table(pooled.take(pa.array(order)), tmp, row_group_size=256)
    tmp.replace(out)
    return out


def pool_validation(parts: dict[str, dict | None]) -> dict | None:
    """The validation sets of several collections as one (ids prefixed as in :func:`pool_examples`)."""
    parts = {k: v for k, v in parts.items() if v}
    if not parts:
        return None
    pooled: dict = {"query_ids": [], "queries": [], "doc_ids": [], "docs": [], "qrels": {}, "elo": {}}
    vectors = all("doc_vectors" in v for v in parts.values())
    if vectors:
        pooled["doc_vectors"] = []
    for name, v in parts.items():
        p = f"{name}{SEP}"
        pooled["query_ids"] += [p + q for q in v["query_ids"]]
        pooled["queries"] += list(v["queries"])
        pooled["doc_ids"] += [[p + d for d in ds] for ds in v["doc_ids"]]
        pooled["docs"] += list(v["docs"])
        for key in ("qrels", "elo"):
            pooled[key].update({p + q: {p + d: g for d, g in grades.items()} for q, grades in v.get(key, {}).items()})
        if vectors:
            pooled["doc_vectors"] += list(v["doc_vectors"])
    return pooled


def train_pooled(cfgs: dict[str, ZeloConfig], out: Path, *, log=print) -> dict:
    """Train one model on the union of the collections' training queries (each run must have
    annotated its training queries, as ``zelo demo`` does). The training settings are the first
    collection's. Returns ``{"checkpoint", "card", "validation": {name: that collection's set}}``."""
    from zelo_ray.train.query_tower import effective_config
    from zelo_ray.eval.splits import query_split
    from zelo_ray.train.stage import training_examples
    from zelo_ray.train.trainer import train_reranker

    first = next(iter(cfgs.values()))
    tcfg = effective_config(first.train)
    if tcfg.towers != "query":
        raise ValueError("a pooled model needs query-tower training (train.towers=query with a bi-encoder base): "
                         "each collection's documents keep its own index's vectors")
    examples, validation, fitting = {}, {}, {}
    for name, cfg in cfgs.items():
        col = open_collection(layout(cfg).data)
        split = query_split(cfg, col)
        examples[name], validation[name], _ = training_examples(cfg, col, split, log=log, out=out / name)
        fitting[name] = pq.ParquetFile(examples[name]).metadata.num_rows
    log("      pooled training queries: " + ", ".join(f"{k} {v:,}" for k, v in fitting.items()))
    pooled = pool_examples(examples, out / "examples-pooled.parquet")
    card = {"dataset": "+".join(cfgs), "pooled": fitting, "target": first.train.target,
            "train_queries": sum(fitting.values())}
    card = train_reranker(tcfg, pooled, out, card=card, log=log, ray_cfg=first.ray,
                          validation=pool_validation(validation), run_cfg=None)
    return {"checkpoint": out / "model", "card": card, "validation": validation}


def pooled_for(cfg: ZeloConfig, pooled: dict, name: str, *, log=print) -> Path:
    """The pooled model as ``name``'s served checkpoint: the same weights (hard links, no copy of
    the tensors) under ``<pooled>/<name>/model``, with the BM25 weight chosen for this collection."""
    from zelo_ray.train.stage import choose_fusion

    src = Path(pooled["checkpoint"])
    dst = src.parent / name / "model"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=_link_or_copy)
    validation = pooled["validation"].get(name)
    if validation and cfg.train.fusion:
        col = open_collection(layout(cfg).data)
        choose_fusion(cfg, col, dst, pooled["card"], validation, log)
    return dst


def _link_or_copy(src: str, dst: str) -> None:
    if src.endswith(".json"):  # the fusion file is written per collection: never share its inode
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
