"""The proof benchmark: does a reranker trained on zELO targets beat the hybrid first stage, and
does it beat the same model trained on binary qrels with mined hard negatives (the paper's baseline)?

Three phases, so the training can run where the compute is (the GPU machine has no Ray):

1. ``prepare`` (build machine, Ray): per collection — index, retrieve, split the judged queries
   (seeded, half test), annotate the training queries' top-100 with the **simulated** judge
   driven by the training queries' qrels only (labelled SIMULATION), and write a bundle:
   ``<bundle>/<ds>/{zelo,binary}.parquet`` (training groups) and ``test.parquet`` (the test
   queries' top-``depth`` hybrid candidates with texts).
2. ``train`` (anywhere: plain PyTorch, same step as the Ray Train worker): for each collection and
   target, fine-tune the base and score the test pairs → ``<scores>/<ds>-<target>.parquet``.
3. ``evaluate`` (build machine): rerank with those scores and compare with BM25, dense and hybrid
   on the test queries; paired bootstrap CIs of reranker − hybrid and zELO − binary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from zelo_ray.layout import layout

DEFAULT_DATASETS = ("cranfield", "cisi", "med", "cacm")


def _cfg(ds: str, workdir: str, overrides: list[str]):
    from zelo_ray.config import load_config

    return load_config(None, [f"data.dataset={ds}", f"data.workdir={workdir}/{ds}", *overrides])


def prepare(datasets, *, bundle: str, workdir: str = "runs/bench-quality", depth: int = 100,
            candidates_per_query: int | None = None, overrides: list[str] = (), log=print) -> dict:
    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.data import open_collection
    from zelo_ray.retrieval.indexing import run_index
    from zelo_ray.retrieval.pipeline import run_retrieve
    from zelo_ray.train.examples import build_groups
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.train.stage import binary_qrels_table
    from zelo_ray.eval.splits import query_split

    out = {}
    for ds in datasets:
        cfg = _cfg(ds, workdir, [f"annotate.output={workdir}/{ds}/annotate-proof", *overrides])
        log(f"[{ds}] index + retrieve")
        run_index(cfg)
        run_retrieve(cfg)
        col = open_collection(layout(cfg).data)
        split = query_split(cfg, col)
        qt = pq.read_table(col.qrels_path(cfg.data.split))
        train_qrels = qt.filter(pc.is_in(qt["query_id"], value_set=pa.array(split["train"])))
        log(f"[{ds}] annotate {len(split['train'])} training queries (simulated judges, training qrels only)")
        ann = run_annotate(cfg, log_fn=log, qrels=train_qrels, queries=split["train"])
        z = pq.read_table(ann["files"]["zelo"])
        qtext = query_texts(col)
        d = Path(bundle) / ds
        d.mkdir(parents=True, exist_ok=True)
        b = binary_qrels_table(layout(cfg).candidates, col.qrels(cfg.data.split), split["train"], cfg.annotate.top_n)
        cand = pq.read_table(layout(cfg).candidates, columns=["query_id", "doc_id", "rank"])
        cand = cand.filter(pc.is_in(cand["query_id"], value_set=pa.array(split["test"])))
        test = cand.filter(pc.less_equal(cand["rank"], depth))
        texts = doc_texts(col, z["doc_id"].to_pylist() + b["doc_id"].to_pylist() + test["doc_id"].to_pylist())
        # groups carry ids only and the texts are stored once: the bundle has to travel to a GPU machine
        for name, table in (("zelo", z), ("binary", b)):
            g = build_groups(table, qtext, texts, group_size=8, candidates_per_query=candidates_per_query, seed=0)
            pq.write_table(g.drop_columns(["query", "docs"]), d / f"{name}.parquet", compression="zstd")
        pq.write_table(test, d / "test.parquet", compression="zstd")
        pq.write_table(pa.table({"id": list(texts), "text": list(texts.values())}), d / "docs.parquet",
                       compression="zstd")
        used = set(split["train"]) | set(split["test"])
        pq.write_table(pa.table({"id": [q for q in qtext if q in used], "text": [t for q, t in qtext.items() if q in used]}),
                       d / "queries.parquet", compression="zstd")
        out[ds] = {"train_queries": len(split["train"]), "test_queries": len(split["test"]),
                   "split": split["source"], "zelo_rows": z.num_rows, "binary_rows": b.num_rows,
                   "binary_positive_share": round(float(np.mean(b["target"].to_numpy())), 4),
                   "test_pairs": test.num_rows, "label": ann["label"]}
        (d / "split.json").write_text(json.dumps(split))
        log(f"[{ds}] bundle: {out[ds]}")
    (Path(bundle) / "manifest.json").write_text(json.dumps(out, indent=2))
    return out


def _hydrate(groups: pa.Table, queries: dict, docs: dict) -> pa.Table:
    g = groups.append_column("query", pa.array([queries[q] for q in groups["query_id"].to_pylist()]))
    return g.append_column("docs", pa.array([[docs[d] for d in ids] for ids in groups["doc_ids"].to_pylist()],
                                            pa.list_(pa.string())))


def _texts(path: Path) -> dict:
    t = pq.read_table(path)
    return dict(zip(t["id"].to_pylist(), t["text"].to_pylist()))


def train(bundle: str, *, base: str, scores: str, datasets=None, targets=("zelo", "binary"), device: str = "cpu",
          epochs: float = 1.0, batch_size: int = 32, max_length: int = 256, lr: float = 5e-5,
          precision: str = "fp32", score_batch: int = 256, max_steps: int | None = None, kind: str = "auto",
          log=print) -> dict:
    """Plain-PyTorch training + scoring of every collection in the bundle (no Ray needed)."""
    import torch

    from zelo_ray.train.plain import train_plain

    datasets = datasets or json.loads((Path(bundle) / "manifest.json").read_text()).keys()
    Path(scores).mkdir(parents=True, exist_ok=True)
    out, parts = {}, []
    for ds in datasets:
        queries, docs = _texts(Path(bundle) / ds / "queries.parquet"), _texts(Path(bundle) / ds / "docs.parquet")
        test = pq.read_table(Path(bundle) / ds / "test.parquet")
        tq = [queries[q] for q in test["query_id"].to_pylist()]
        td = [docs[d] for d in test["doc_id"].to_pylist()]
        for target in targets:
            groups = _hydrate(pq.read_table(Path(bundle) / ds / f"{target}.parquet"), queries, docs)
            log(f"[{ds}/{target}] train on {groups.num_rows} groups ({device}, {epochs} epochs)")
            r = train_plain(groups, base=base, batch_size=batch_size, epochs=epochs, lr=lr, max_length=max_length,
                            precision=precision, device=device, max_steps=max_steps, kind=kind, log=log,
                            log_every=50)
            model = r.pop("model")
            t0 = time.perf_counter()
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                s = model.score(tq, td, max_length=max_length,
                                batch_size=score_batch, device=device).numpy()
            r["score_s"] = time.perf_counter() - t0
            part = test.select(["query_id", "doc_id", "rank"]).append_column("score", pa.array(s, pa.float32()))
            n = part.num_rows
            parts.append(part.append_column("dataset", pa.array([ds] * n)).append_column("target", pa.array([target] * n)))
            out[f"{ds}-{target}"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
            log(f"[{ds}/{target}] {out[f'{ds}-{target}']}")
    # one file, not one per run: the GPU machine sends back at most 8 files
    pq.write_table(pa.concat_tables(parts), Path(scores) / "scores.parquet")
    (Path(scores) / "training.json").write_text(json.dumps(out, indent=2))
    return out


def evaluate(datasets, *, scores: str, bundle: str, workdir: str = "runs/bench-quality",
             overrides: list[str] = (), log=print) -> dict:
    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import evaluate_runs, rankings_from_candidates

    res = {}
    for ds in datasets:
        cfg = _cfg(ds, workdir, list(overrides))
        col = open_collection(layout(cfg).data)
        test = json.loads((Path(bundle) / ds / "split.json").read_text())["test"]
        runs = rankings_from_candidates(layout(cfg).candidates, test, cfg.evaluate.depth)
        all_scores = pq.read_table(Path(scores) / "scores.parquet")
        for target in ("zelo", "binary"):
            t = all_scores.filter(pc.and_(pc.equal(all_scores["dataset"], ds), pc.equal(all_scores["target"], target)))
            if t.num_rows == 0:
                continue
            run = {}
            for q, d, s in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist(), t["score"].to_pylist()):
                run.setdefault(q, []).append((s, d))
            hyb = runs["hybrid"]
            reranked = {}
            for q in test:
                head = [d for _, d in sorted(run.get(q, []), key=lambda x: -x[0])]
                reranked[q] = head + [d for d in hyb.get(q, []) if d not in set(head)]
            runs[f"reranker_{target}"] = reranked
        e = cfg.evaluate
        rep = evaluate_runs(col.qrels(cfg.data.split), runs, test, n_boot=e.bootstrap, confidence=e.confidence,
                            seed=e.seed, versus="hybrid")
        if "reranker_zelo" in runs and "reranker_binary" in runs:
            zb = evaluate_runs(col.qrels(cfg.data.split), {"b": runs["reranker_binary"], "z": runs["reranker_zelo"]},
                               test, n_boot=e.bootstrap, confidence=e.confidence, seed=e.seed, versus="b")
            rep["zelo_minus_binary"] = zb["z"]["delta_vs_b"]
        res[ds] = rep
        log(f"[{ds}] " + "  ".join(f"{s} {rep[s]['ndcg@10']['mean']:.3f}" for s in runs))
    return res
