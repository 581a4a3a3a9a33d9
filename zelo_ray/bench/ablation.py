"""`zelo bench rerank`: where a served reranker's quality comes from, on every shared collection.

Per collection, on its held-out test queries (paired bootstrap CIs against hybrid):

* ``bm25``, ``dense``, ``hybrid`` — the first stage;
* ``fusion_only`` — no training: the base embedding model's score fused with BM25, the weight
  chosen on the validation queries exactly as for a trained model (first-stage evidence
  re-weighted); ``fusion_only_model_only`` is the base model alone over the same candidates;
* ``zelo`` — the served function of the model trained on zELO targets (`zelo demo`'s
  ``reranker``), and ``zelo_model_only`` the model alone;
* ``binary`` / ``binary_model_only`` — the same recipe trained on binary qrels with mined hard
  negatives instead of zELO targets (the paper's baseline);
* ``dense_zelo_embedder`` / ``hybrid_zelo_embedder`` — the zELO-trained model used as the
  embedding model (loaded with ``SentenceTransformer``): exact search over the whole corpus, and
  its RRF with BM25. When validation kept the untrained base, these equal ``dense``/``hybrid``
  by construction and are reported as such rather than recomputed.

Everything runs through the library (`run_quickstart`, `run_train_stage`, `evaluate_reranker`),
so the rows are what a user's run produces. Judges are simulated (SIMULATION).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from zelo_ray.layout import layout

DATASETS = ("cranfield", "cisi", "med", "cacm", "vaswani")
ROWS = ("bm25", "dense", "hybrid", "fusion_only", "fusion_only_model_only", "zelo", "zelo_model_only",
        "binary", "binary_model_only", "dense_zelo_embedder", "hybrid_zelo_embedder")


def _base_checkpoint(cfg, out: Path) -> str:
    """The untrained base saved as a checkpoint, so the fusion and evaluation code treat it like
    a trained one (same token budget as training)."""
    from zelo_ray.train.models import CARD, load_reranker, save_reranker

    if not (out / CARD).exists():
        save_reranker(load_reranker(cfg.train.base, cfg.train.kind), out,
                      {"note": "untrained base (fusion-only row)", "train_config": {"max_length": cfg.train.max_length}})
    return str(out)


def _embedder_rows(cfg, col, ckpt: str, queries: list[str], bm25_runs: dict, depth: int) -> dict:
    """Dense retrieval with the trained model as a SentenceTransformer (exact search) and its RRF
    with the BM25 ranking."""
    from sentence_transformers import SentenceTransformer

    from zelo_ray.retrieval.fusion import rrf
    from zelo_ray.train.examples import query_texts
    from zelo_ray.train.rerank import checkpoint_max_length

    model = SentenceTransformer(ckpt, device="cpu")
    model.max_seq_length = checkpoint_max_length(ckpt, cfg.rerank.max_length)
    t = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"])
    ids = t["doc_id"].to_pylist()
    texts = [f"{a}. {b}" if a else b for a, b in zip(t["title"].to_pylist(), t["text"].to_pylist())]
    docs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    qt = query_texts(col)
    q = model.encode([qt[x] for x in queries], normalize_embeddings=True, convert_to_numpy=True)
    top = np.argsort(-(q @ docs.T), axis=1)[:, :depth]
    dense = {x: [ids[i] for i in row] for x, row in zip(queries, top)}
    row = {d: i for i, d in enumerate(ids)}
    hybrid = {}
    for x, dense_rows in zip(queries, top):
        # the same fusion (and tie-breaking) the retrieve stage's hybrid uses
        fused = rrf([dense_rows, np.array([row[d] for d in bm25_runs.get(x, [])], np.int64)], c=cfg.retrieve.rrf_c)
        hybrid[x] = [ids[i] for i in fused.ids[:depth]]
    return {"dense_zelo_embedder": dense, "hybrid_zelo_embedder": hybrid}


def run_one(ds: str, *, workdir: str, overrides: list[str] = (), log=print) -> dict:
    from zelo_ray.config import load_config
    from zelo_ray.data import open_collection
    from zelo_ray.eval.evaluate import evaluate_runs, rankings_from_candidates
    from zelo_ray.workflows.demo import run_quickstart
    from zelo_ray.train.rerank import rankings_from_reranked
    from zelo_ray.train.stage import (choose_fusion, evaluate_reranker, query_split, run_train_stage,
                                      split_training_table, training_table)

    quiet = lambda *_: None  # noqa: E731 - the stages' own lines go nowhere; this bench prints its own
    cfg = load_config(None, [f"data.dataset={ds}", f"data.workdir={workdir}/{ds}", *overrides])
    t0 = time.perf_counter()
    run_quickstart(cfg, log=quiet)
    timings = {"demo_s": round(time.perf_counter() - t0, 1)}
    col = open_collection(layout(cfg).data)
    split = query_split(cfg, col)
    zelo_ckpt = str(layout(cfg).train / "model")
    card = json.loads((Path(zelo_ckpt) / "zelo_card.json").read_text())
    log(f"  {ds}: demo done in {timings['demo_s']:.0f} s; zELO model best step "
        f"{card.get('validation', {}).get('best_step')}")

    t0 = time.perf_counter()
    bin_cfg = load_config(None, [f"data.dataset={ds}", f"data.workdir={workdir}/{ds}", *overrides,
                                 "train.target=binary_qrels", f"train.output={workdir}/{ds}/train-binary"])
    run_train_stage(bin_cfg, log=quiet, split=split)
    timings["binary_train_s"] = round(time.perf_counter() - t0, 1)

    base_ckpt = _base_checkpoint(cfg, Path(workdir) / ds / "fusion-only")
    _, validation = split_training_table(cfg, col, training_table(cfg, col, split["train"]))
    base_card = json.loads((Path(base_ckpt) / "zelo_card.json").read_text())
    choose_fusion(cfg, col, Path(base_ckpt), base_card, validation, log=quiet)

    t0 = time.perf_counter()
    ckpts = {"zelo": zelo_ckpt, "binary": str(Path(workdir) / ds / "train-binary" / "model"),
             "fusion_only": base_ckpt}
    evaluate_reranker(cfg, col, split["test"], ckpts, log=quiet, out=Path(workdir) / ds / "ablation")
    timings["rerank_s"] = round(time.perf_counter() - t0, 1)
    runs = rankings_from_candidates(layout(cfg).candidates, split["test"], cfg.evaluate.depth)
    for name in ckpts:
        t = pq.read_table(Path(workdir) / ds / "ablation" / f"reranked-{name}.parquet")
        runs[name] = rankings_from_reranked(t)
        runs[f"{name}_model_only"] = rankings_from_reranked(t, by="model_score")
    # a query some reranker could not score is left out of every row (evaluate_reranker does the same)
    kept = [q for q in split["test"] if all(q in runs[n] for n in ckpts)]
    if card.get("validation", {}).get("best_step", 1) == 0:
        runs["dense_zelo_embedder"], runs["hybrid_zelo_embedder"] = runs["dense"], runs["hybrid"]
        embedder = "validation kept the untrained base: the embedder is the index's model"
    else:
        t0 = time.perf_counter()
        runs.update(_embedder_rows(cfg, col, zelo_ckpt, kept, runs["bm25"], cfg.evaluate.depth))
        timings["embedder_s"] = round(time.perf_counter() - t0, 1)
        embedder = "the trained checkpoint loaded with SentenceTransformer; exact search over the corpus"
    e = cfg.evaluate
    metrics = evaluate_runs(col.qrels(cfg.data.split), {k: runs[k] for k in ROWS}, kept, n_boot=e.bootstrap,
                            confidence=e.confidence, seed=e.seed, versus="hybrid")
    # the questions the ablation asks, as paired differences on the same bootstrap resamples
    pairs = {}
    for a, b in (("zelo", "fusion_only"), ("zelo", "binary"), ("zelo", "zelo_model_only")):
        pairs[f"{a}-{b}"] = evaluate_runs(col.qrels(cfg.data.split), {a: runs[a], b: runs[b]}, kept,
                                          n_boot=e.bootstrap, confidence=e.confidence, seed=e.seed,
                                          versus=b)[a]["delta_vs_" + b]["ndcg@10"]
    fusion = {n: json.loads((Path(c) / "zelo_fusion.json").read_text())["bm25_weight"] for n, c in ckpts.items()}
    out = {"dataset": ds, "test_queries": len(kept), "train_queries": len(split["train"]),
           "validation_queries": len(validation["query_ids"]) if validation else 0,
           "bm25_weight": fusion, "zelo_best_step": card.get("validation", {}).get("best_step"),
           "embedder": embedder, "timings": timings,
           "ndcg@10": {k: {kk: round(vv, 4) for kk, vv in metrics[k]["ndcg@10"].items()} for k in ROWS},
           "delta_vs_hybrid": {k: {kk: round(vv, 4) for kk, vv in metrics[k]["delta_vs_hybrid"]["ndcg@10"].items()}
                               for k in ROWS if k != "hybrid"},
           "paired": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in pairs.items()}}
    log(f"  {ds}: " + "  ".join(f"{k} {out['ndcg@10'][k]['mean']:.3f}" for k in ROWS))
    return out


def run(datasets=DATASETS, *, workdir: str = "runs/bench-ablation", overrides: list[str] = (), log=print) -> dict:
    from zelo_ray.bench.common import machine

    t0 = time.perf_counter()
    per = [run_one(ds, workdir=workdir, overrides=list(overrides), log=log) for ds in datasets]
    summary = {
        "served_beats_hybrid": [r["dataset"] for r in per if r["delta_vs_hybrid"]["zelo"]["ci_low"] > 0],
        "served_beats_fusion_only": [r["dataset"] for r in per if r["paired"]["zelo-fusion_only"]["ci_low"] > 0],
        "zelo_at_least_binary": [r["dataset"] for r in per if r["paired"]["zelo-binary"]["mean"] >= 0],
    }
    return {"benchmark": "rerank_ablation", "label": "SIMULATION", "machine": machine(),
            "overrides": list(overrides), "wall_s": round(time.perf_counter() - t0, 1), "summary": summary,
            "collections": per}


def plot(result: dict, path: str | Path) -> Path:
    """Grouped bars of nDCG@10 − hybrid with 95% CIs, per collection and system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ROWS if r != "hybrid"]
    per = result["collections"]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(rows)
    for i, name in enumerate(rows):
        x = np.arange(len(per)) + (i - len(rows) / 2) * width + width / 2
        m = np.array([r["delta_vs_hybrid"][name]["mean"] for r in per])
        lo = np.array([r["delta_vs_hybrid"][name]["ci_low"] for r in per])
        hi = np.array([r["delta_vs_hybrid"][name]["ci_high"] for r in per])
        ax.bar(x, m, width, yerr=[m - lo, hi - m], capsize=2, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(per)), [f"{r['dataset']}\n(hybrid {r['ndcg@10']['hybrid']['mean']:.3f})" for r in per])
    ax.set_ylabel("nDCG@10 − hybrid (test queries, 95% CI)")
    ax.set_title("Where the served reranker's quality comes from (SIMULATION judges)")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    """The result as a table: nDCG@10 per system, and − hybrid [95% CI] for the rows that matter."""
    per = result["collections"]
    head = "| system | " + " | ".join(f"{r['dataset']} ({r['test_queries']} test q.)" for r in per) + " |"
    lines = [head, "| --- |" + " --- |" * len(per)]
    for name in ROWS:
        cells = []
        for r in per:
            m = r["ndcg@10"][name]["mean"]
            d = r["delta_vs_hybrid"].get(name)
            cells.append(f"{m:.3f}" + (f" ({d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}])" if d else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key in ("zelo-fusion_only", "zelo-binary"):
        lines.append(f"| {key} (paired) | " + " | ".join(
            f"{r['paired'][key]['mean']:+.3f} [{r['paired'][key]['ci_low']:+.3f}, {r['paired'][key]['ci_high']:+.3f}]"
            for r in per) + " |")
    lines.append("| BM25 weight (zelo / binary / fusion-only) | " + " | ".join(
        f"{r['bm25_weight']['zelo']} / {r['bm25_weight']['binary']} / {r['bm25_weight']['fusion_only']}" for r in per) + " |")
    lines.append("| zELO model: best step (0 = base kept) | " + " | ".join(str(r["zelo_best_step"]) for r in per) + " |")
    return "\n".join(lines)
