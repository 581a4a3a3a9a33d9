"""The query-tower recipe without Ray, for a lent GPU (`benchmarks/gpu_train.py --query-tower`).

The GPU machine has PyTorch and transformers but no Ray, LanceDB or network, and takes 64 MiB of
files. :func:`prepare` (here, on CPU, after `zelo demo` or `zelo bench rerank` ran) writes a
small bundle per collection: the training rows without their vectors (query, candidate ids,
targets, calibrated Elo), every document's text, the validation queries (held-out training
queries with their zELO scores, as the train stage splits them) and the test queries with their
hybrid candidates and qrels. :func:`train` (there) encodes the documents with the frozen tower at
the GPU's token budget, trains the query tower with the library's own step
(:class:`~zelo_ray.train.loop.StepRunner`, in-batch listwise loss), keeps the epoch that
validation's r with the zELO scores prefers (the train stage's criterion), and reports the
model alone over the hybrid candidates and as a dense retriever on each collection's test queries.
Several bundles train one pooled model; their ids are prefixed as :mod:`zelo_ray.workflows.pooled` does.

Example::

    prepare({"nfcorpus": cfg}, Path("runs/gpu/qt"))                     # CPU, here
    train([Path("runs/gpu/qt/nfcorpus")], "runs/gpu/model", device="cuda")  # GPU, there
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["prepare", "train"]

ROW_COLUMNS = ["query_id", "query", "doc_ids", "targets", "elo"]


def prepare(cfgs: dict, out: Path, *, log=print) -> dict[str, Path]:
    """One bundle folder per run configuration (the run must have trained a query tower)."""
    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import rankings_from_candidates
    from zelo_ray.layout import layout
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.eval.splits import query_split
    from zelo_ray.train.stage import split_training_table, training_table

    made = {}
    for name, cfg in cfgs.items():
        run = layout(cfg)
        rows = run.train / f"examples-query-{cfg.train.target}.parquet"
        if not rows.exists():
            raise FileNotFoundError(f"{rows}: no query-tower examples; run `zelo demo` on {name} first")
        col = open_collection(run.data)
        split = query_split(cfg, col)
        _, val = split_training_table(cfg, col, training_table(cfg, col, split["train"]))
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(rows, columns=ROW_COLUMNS), d / "rows.parquet", compression="zstd")
        ids = pq.read_table(col.corpus_path, columns=["doc_id"])["doc_id"].to_pylist()
        texts = doc_texts(col, ids)
        pq.write_table(pa.table({"doc_id": ids, "text": [texts[i] for i in ids]}), d / "docs.parquet",
                       compression="zstd")
        qt, qrels = query_texts(col), col.qrels(cfg.data.split)
        hybrid = rankings_from_candidates(run.candidates, split["test"], cfg.rerank.depth)["hybrid"]
        test = {"query_ids": sorted(hybrid), "queries": [qt[q] for q in sorted(hybrid)],
                "candidates": [hybrid[q] for q in sorted(hybrid)],
                "qrels": {q: {k: int(v) for k, v in qrels.get(q, {}).items()} for q in hybrid}}
        validation = None if val is None else {k: val[k] for k in ("query_ids", "queries", "doc_ids", "qrels", "elo")}
        (d / "eval.json").write_text(json.dumps({"test": test, "validation": validation}))
        made[name] = d
        log(f"  {name}: {pq.ParquetFile(d / 'rows.parquet').metadata.num_rows:,} training rows, {len(ids):,} documents, "
            f"{len(test['query_ids'])} test queries -> {d}")
    return made


def _prefixed(bundles: list[Path]) -> tuple[pa.Table, dict[str, str], dict, dict]:
    """Every bundle's rows, documents, validation and test sets, ids prefixed ``<name>/``."""
    from zelo_ray.workflows.pooled import pool_validation

    rows, docs, vals, tests = [], {}, {}, {}
    for b in bundles:
        p = f"{b.name}/"
        t = pq.read_table(b / "rows.parquet")
        flat = t["doc_ids"].combine_chunks()
        t = t.set_column(0, "query_id", pc.binary_join_element_wise(pa.scalar(p), t["query_id"], ""))
        t = t.set_column(2, "doc_ids", pa.ListArray.from_arrays(
            flat.offsets, pc.binary_join_element_wise(pa.scalar(p), flat.flatten(), "")))
        rows.append(t)
        d = pq.read_table(b / "docs.parquet")
        texts = dict(zip(d["doc_id"].to_pylist(), d["text"].to_pylist()))
        docs.update((p + k, v) for k, v in texts.items())
        e = json.loads((b / "eval.json").read_text())
        v = e["validation"]
        vals[b.name] = v and {**v, "docs": [[texts[x] for x in ds] for ds in v["doc_ids"]]}
        tests[b.name] = e["test"]
    return pa.concat_tables(rows), docs, pool_validation(vals), tests


def train(bundles: list[Path], model: str, *, device: str = "cuda", epochs: int = 10, max_length: int = 512,
          queries_per_step: int = 32, lr: float = 1e-4, doc_map_lr: float = 3e-3, temperature: float = 0.3,
          precision: str = "bf16", log=print) -> dict:
    """Train one query tower on every bundle's rows; returns timings, validation per epoch and
    each collection's test nDCG@10 (base and trained, reranking and dense retrieval)."""
    from zelo_ray.train.loop import StepRunner
    from zelo_ray.scoring.models import load_reranker
    from zelo_ray.train.worker import validate

    rows, docs, val, tests = _prefixed(bundles)
    scorer = load_reranker(model, "bi_encoder", towers="query").to(device)
    t0 = time.perf_counter()
    ids = list(docs)
    vectors = scorer.document_vectors([docs[i] for i in ids], max_length=max_length, batch_size=256, device=device)
    encode_s = time.perf_counter() - t0
    row_of = {d: i for i, d in enumerate(ids)}
    steps_per_epoch = max(1, rows.num_rows // queries_per_step)
    runner = StepRunner(scorer, loss="inbatch_listwise", lr=lr, weight_decay=0.01,
                        warmup_steps=max(1, steps_per_epoch // 10), total_steps=steps_per_epoch * epochs,
                        max_length=max_length, precision=precision, device=device, doc_map_lr=doc_map_lr,
                        temperature=temperature)
    history = [{"epoch": 0, **(validate(scorer, val, max_length, device) if val else {})}]
    result = {"device": device, "rows": rows.num_rows, "documents": len(ids), "max_length": max_length,
              "encode_docs_s": round(encode_s, 1), "docs_per_s": round(len(ids) / max(encode_s, 1e-9), 1),
              "base": _held_out_metrics(scorer, tests, docs, vectors, row_of, max_length, device)}
    best, best_state = history[0].get("val_score", float("-inf")), copy.deepcopy(scorer.state_dict())
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        scorer.train()
        losses = [runner.step(_batch(rows, idx, vectors, row_of))
                  for idx in _epoch_batches(rows.num_rows, queries_per_step, seed=epoch)]
        m = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4),
             **(validate(scorer, val, max_length, device) if val else {})}
        history.append(m)
        log(f"  epoch {epoch}: {m}")
        if m.get("val_score", float("inf")) > best:
            best, best_state = m["val_score"], copy.deepcopy(scorer.state_dict())
    result["train_s"] = round(time.perf_counter() - t0, 1)
    scorer.load_state_dict(best_state)
    chosen = max(history, key=lambda h: h.get("val_score", float("-inf"))) if val else history[-1]
    result.update(history=history, best_epoch=chosen["epoch"],
                  trained=_held_out_metrics(scorer, tests, docs, vectors, row_of, max_length, device))
    return result


def _epoch_batches(n: int, size: int, *, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[s:s + size] for s in range(0, n - size + 1, size)] or [order]


def _batch(rows: pa.Table, idx: np.ndarray, vectors, row_of: dict[str, int]) -> dict:
    t = rows.take(pa.array(idx)).to_pydict()
    t["doc_vectors"] = [vectors[[row_of[d] for d in ds]].numpy() for ds in t["doc_ids"]]
    return t


def _held_out_metrics(scorer, tests: dict, docs: dict[str, str], vectors, row_of: dict[str, int], max_length: int,
                  device) -> dict:
    """Per collection: nDCG@10 of the hybrid candidates, of the model alone reranking them, and of
    the model as a dense retriever over every document of that collection."""
    import torch

    from zelo_ray.eval.metrics import per_query_metrics

    out = {}
    scorer.eval()
    with torch.no_grad():
        for name, t in tests.items():
            p = f"{name}/"
            qv = scorer.score_queries(t["queries"], max_length=max_length, device=device)
            mine = [d for d in row_of if d.startswith(p)]
            dv = scorer.map_documents(vectors[[row_of[d] for d in mine]].to(device)).float().cpu()
            sims = qv @ dv.T  # map_documents gives unit vectors, as the query tower does
            local = {d[len(p):]: k for k, d in enumerate(mine)}
            runs = {"hybrid": {}, "model_only": {}, "dense": {}}
            for j, (q, cands) in enumerate(zip(t["query_ids"], t["candidates"])):
                s = sims[j, [local[c] for c in cands]].numpy()
                runs["hybrid"][q] = list(cands)
                runs["model_only"][q] = [cands[i] for i in (-s).argsort(kind="stable")]
                top = torch.topk(sims[j], k=min(10, sims.shape[1])).indices.tolist()
                runs["dense"][q] = [mine[i][len(p):] for i in top]
            out[name] = {k: round(float(np.mean(list(per_query_metrics(t["qrels"], r, t["query_ids"])["ndcg@10"]
                                                      .values()))), 4) for k, r in runs.items()}
    return out
