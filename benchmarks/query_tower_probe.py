"""Probe: what is each choice of query-tower training worth on NFCorpus's *dev* queries?

Reads a finished `zelo demo` run on NFCorpus (its index vectors, zELO table and candidates) and
trains the MiniLM query tower in plain PyTorch, one variable changed per run, against the frozen
base document vectors of the whole corpus (softmax over every document; targets softmax(elo/τ)
on the query's judged candidates). Every ``--eval-every`` steps it prints, from the same model:

* ``val_rr`` / ``val_r`` — the validation queries (training queries held out from fitting, graded
  by their own zELO scores: what training may look at) reranking their hybrid top-20, and the
  mean Pearson r of the model's scores with their zELO scores;
* ``dev_rr`` — the dev queries' hybrid top-20 reranked by the model alone, nDCG@10 against the
  dev qrels (never used to choose anything here; the test split is for the final table only);
* ``dev_dense`` — exact dense retrieval with the tuned query tower over the mapped vectors.

    .venv/bin/python -m benchmarks.query_tower_probe runs/nfcorpus --lr 1e-4 --tau 0.3 --map-lr 3e-3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from zelo_ray.config import load_config
from zelo_ray.data import open_collection
from zelo_ray.eval.evaluate import rankings_from_candidates
from zelo_ray.eval.labelfree import graded_qrels
from zelo_ray.core.stats import score_agreement
from zelo_ray.eval.metrics import per_query_metrics
from zelo_ray.layout import layout
from zelo_ray.retrieval.docvectors import index_vectors
from zelo_ray.data.texts import query_texts
from zelo_ray.scoring.models import load_reranker
from zelo_ray.eval.splits import query_split
from zelo_ray.train.validation import split_validation


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished `zelo demo` run directory on NFCorpus (e.g. runs/nfcorpus)")
    ap.add_argument("--dataset", default="../shared/datasets/nfcorpus")
    ap.add_argument("--lr", type=float, default=1e-4, help="query encoder's peak learning rate")
    ap.add_argument("--tau", type=float, default=0.3, help="target = softmax(calibrated Elo / tau)")
    ap.add_argument("--map-lr", type=float, default=3e-3, help="learning rate of the map on document vectors (0: off)")
    ap.add_argument("--scale", type=float, default=20.0, help="logit = scale · cos (fixed here)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--queries-per-step", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def _data(a):
    cfg = load_config(None, [f"data.dataset={a.dataset}", f"data.workdir={a.run}", "split.train_split=train"])
    col = open_collection(layout(cfg).data)
    z = pq.read_table(layout(cfg).annotate / "zelo.parquet")
    z = z.filter(pc.is_in(z["query_id"], value_set=pa.array(query_split(cfg, col)["train"])))
    fit_q, val_q = split_validation(sorted(set(z["query_id"].to_pylist())), 0.2, seed=cfg.split.seed + 2)
    ids, _, vectors = index_vectors(layout(cfg).dense, col.corpus_path)
    row = {d: i for i, d in enumerate(ids)}
    per: dict[str, list[tuple[int, float]]] = {}
    for q, d, e in zip(z["query_id"].to_pylist(), z["doc_id"].to_pylist(), z["calibrated"].to_pylist()):
        per.setdefault(q, []).append((row[d], e))
    dev_qrels = col.qrels("dev")
    val_set = set(val_q)
    val_elo: dict[str, dict[str, float]] = {}
    for q, d, c in zip(z["query_id"].to_pylist(), z["doc_id"].to_pylist(), z["calibrated"].to_pylist()):
        if q in val_set:
            val_elo.setdefault(q, {})[d] = c
    return {"fit": [q for q in fit_q if q in per], "per": per, "val": val_q, "dev": sorted(dev_qrels),
            "dev_qrels": dev_qrels, "val_grades": graded_qrels(z.filter(pc.is_in(z["query_id"], value_set=pa.array(val_q)))),
            "val_elo": val_elo, "ids": ids, "row": row, "vectors": torch.from_numpy(vectors), "qt": query_texts(col),
            "hybrid": rankings_from_candidates(layout(cfg).candidates, val_q + sorted(dev_qrels), 20)["hybrid"]}


def _encode(model, texts):
    t = model.tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    return model.embed(t["input_ids"], t["attention_mask"])


def _evaluate(model, dmap, d, step):
    model.eval()
    with torch.no_grad():
        docs = _mapped(d["vectors"], dmap)
        qs = d["val"] + d["dev"]
        scores = (_encode(model, [d["qt"][q] for q in qs]) @ docs.T).numpy()
    model.train()
    res, at = {}, {q: i for i, q in enumerate(qs)}
    for name, queries, qrels in (("val", d["val"], d["val_grades"]), ("dev", d["dev"], d["dev_qrels"])):
        rr, dense, agree = {}, {}, {}
        for q in queries:
            c = d["hybrid"].get(q, [])
            s = scores[at[q], [d["row"][x] for x in c]]
            rr[q], agree[q] = [c[j] for j in np.argsort(-s, kind="stable")], (c, s)
            dense[q] = [d["ids"][j] for j in np.argsort(-scores[at[q]])[:100]]
        res[f"{name}_rr"] = float(np.mean(list(per_query_metrics(qrels, rr, queries)["ndcg@10"].values())))
        if name == "dev":
            res["dev_dense"] = float(np.mean(list(per_query_metrics(qrels, dense, queries)["ndcg@10"].values())))
        else:
            res["val_r"] = score_agreement(agree, d["val_elo"])
    print(f"step {step} " + " ".join(f"{k} {v:.4f}" for k, v in res.items()), flush=True)
    return {"step": step, **res}


def _mapped(vectors, dmap):
    return torch.nn.functional.normalize(vectors + vectors @ dmap, dim=-1) if dmap is not None else vectors


def main(argv=None) -> int:
    a = _args(argv)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    d = _data(a)
    print(f"{len(d['fit'])} fitting, {len(d['val'])} validation, {len(d['dev'])} dev queries; "
          f"{len(d['ids'])} documents", flush=True)
    model = load_reranker("default", "bi_encoder")
    dmap = torch.nn.Parameter(torch.zeros(d["vectors"].shape[1], d["vectors"].shape[1])) if a.map_lr else None
    groups = [{"params": list(model.model.parameters())}] + ([{"params": [dmap], "lr": a.map_lr, "weight_decay": 0.0}]
                                                           if dmap is not None else [])
    opt = torch.optim.AdamW(groups, lr=a.lr, weight_decay=0.01)
    warm = max(1, a.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (a.steps - s) / (a.steps - warm)))
    hist, t0 = [_evaluate(model, dmap, d, 0)], time.perf_counter()
    for step in range(1, a.steps + 1):
        qs = rng.choice(d["fit"], a.queries_per_step, replace=False)
        target = torch.full((len(qs), len(d["ids"])), float("-inf"))
        for k, q in enumerate(qs):
            rows, elo = zip(*d["per"][q])
            target[k, list(rows)] = torch.tensor(elo, dtype=torch.float32) / a.tau
        logits = a.scale * _encode(model, [d["qt"][q] for q in qs]) @ _mapped(d["vectors"], dmap).T
        loss = -(torch.softmax(target, 1) * torch.log_softmax(logits, 1)).sum(1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        if step % a.eval_every == 0 or step == a.steps:
            hist.append(_evaluate(model, dmap, d, step))
    print(json.dumps({"args": vars(a), "seconds": round(time.perf_counter() - t0, 1), "history": hist}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
