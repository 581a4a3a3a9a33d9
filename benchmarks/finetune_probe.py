"""Probe: can the demo's bi-encoder learn from the zELO targets of ~100 training queries?

Reads a finished `zelo demo` run directory (its split, zELO table, candidates) and fine-tunes
all-MiniLM-L6-v2 in plain PyTorch in one of three ways, each with a listwise loss against
softmax(calibrated Elo) over a query's judged candidates (issue #14's "measure what each choice
is worth"):

* ``qtower`` — only the query encoder; document vectors stay those of the base model, so every
  training query can use all of its ~100 judged candidates (plus in-batch negatives) cheaply;
* ``adapter`` — a linear map on frozen query embeddings (q ↦ normalise(q + qA), A from 0);
* ``full`` — both towers, ``--group`` candidates per query (top half by Elo + random rest),
  other queries' candidates as in-batch negatives.

After each epoch (``--eval-every`` steps for ``full``) it prints nDCG@10 on the validation queries
(zELO grades, what training may look at) and on the test queries (qrels; never used to choose
anything), each over the hybrid top-``--depth``. Nothing is written; the numbers are the output.

    .venv/bin/python -m benchmarks.finetune_probe runs/cranfield --mode qtower --epochs 6
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from zelo_ray.data import open_collection
from zelo_ray.eval.metrics import per_query_metrics
from zelo_ray.data.texts import doc_texts, query_texts
from zelo_ray.scoring.models import load_reranker
from zelo_ray.eval.splits import split_queries
from zelo_ray.train.validation import split_validation, validation_grades


def _candidates(run: str, queries: list[str], depth: int) -> dict[str, list[str]]:
    t = pq.read_table(f"{run}/candidates.parquet", columns=["query_id", "doc_id", "rank"])
    t = t.filter(pc.is_in(t["query_id"], value_set=pa.array(queries)))
    t = t.filter(pc.less_equal(t["rank"], depth)).sort_by([("query_id", "ascending"), ("rank", "ascending")])
    out: dict[str, list[str]] = {}
    for q, d in zip(t["query_id"].to_pylist(), t["doc_id"].to_pylist()):
        out.setdefault(q, []).append(d)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished `zelo demo` run directory (e.g. runs/cranfield)")
    ap.add_argument("--split", default="test", help="qrels split the demo tested on")
    ap.add_argument("--mode", choices=["qtower", "adapter", "full"], default="qtower")
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--lr", type=float, default=None, help="default: 2e-5 (qtower, full), 1e-3 (adapter)")
    ap.add_argument("--tau", type=float, default=1.0, help="target = softmax(calibrated Elo / tau)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--group", type=int, default=16, help="full: candidates per query per step")
    ap.add_argument("--queries-per-step", type=int, default=8)
    ap.add_argument("--no-in-batch", action="store_true", help="no other queries' candidates as negatives")
    ap.add_argument("--eval-every", type=int, default=20, help="full: evaluate every N steps")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lr = args.lr or (1e-3 if args.mode == "adapter" else 2e-5)

    col = open_collection(f"{args.run}/data")
    split = split_queries(col, test_split=args.split, train_split=None, test_fraction=0.5, seed=0)
    z = pq.read_table(f"{args.run}/annotate/zelo.parquet")
    z = z.filter(pc.is_in(z["query_id"], value_set=pa.array(split["train"])))
    fit_q, val_q = split_validation(sorted(set(z["query_id"].to_pylist())), 0.2, seed=2)
    zfit = z.filter(pc.is_in(z["query_id"], value_set=pa.array(fit_q)))
    groups: dict[str, list[tuple[str, float]]] = {}
    for q, d, c in zip(*(zfit[k].to_pylist() for k in ("query_id", "doc_id", "calibrated"))):
        groups.setdefault(q, []).append((d, c))
    val_grades, qrels = validation_grades(z, val_q), col.qrels(args.split)
    val_c, test_c = _candidates(args.run, val_q, args.depth), _candidates(args.run, split["test"], args.depth)
    val_judged = sorted(q for q in val_c if any(v > 0 for v in val_grades.get(q, {}).values()))
    qt = query_texts(col)
    dt = doc_texts(col, [d for g in groups.values() for d, _ in g] + [d for c in (val_c, test_c) for ds in c.values()
                                                                      for d in ds])
    model = load_reranker("default")
    ml = args.max_length

    def embed(texts: list[str], grad: bool = False) -> torch.Tensor:
        out = []
        for s in range(0, len(texts), 64):
            enc = model.tokenizer(texts[s:s + 64], truncation=True, max_length=ml, padding=True, return_tensors="pt")
            with torch.set_grad_enabled(grad):
                out.append(model.embed(enc["input_ids"], enc["attention_mask"]))
        return torch.cat(out)

    doc_ids = sorted(dt)
    row = {d: i for i, d in enumerate(doc_ids)}
    t0 = time.perf_counter()
    model.eval()
    frozen_docs = embed([dt[d] for d in doc_ids]) if args.mode != "full" else None
    print(f"embedded {len(doc_ids)} documents in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    adapter = torch.zeros(frozen_docs.shape[1], frozen_docs.shape[1], requires_grad=True) if args.mode == "adapter" else None

    def query_vectors(texts: list[str], grad: bool = False) -> torch.Tensor:
        q = embed(texts, grad=grad and args.mode != "adapter")
        return torch.nn.functional.normalize(q + q @ adapter, dim=-1) if adapter is not None else q

    def evaluate(tag: str) -> None:
        model.eval()
        res = {}
        for name, cands, labels, qs in (("val", val_c, val_grades, val_judged), ("test", test_c, qrels, split["test"])):
            qids = sorted(cands)
            with torch.no_grad():
                qv = query_vectors([qt[q] for q in qids])
                run = {}
                for i, q in enumerate(qids):
                    dv = frozen_docs[[row[d] for d in cands[q]]] if frozen_docs is not None else embed([dt[d] for d in cands[q]])
                    run[q] = [cands[q][j] for j in np.argsort(-(dv @ qv[i]).numpy(), kind="stable")]
            per = per_query_metrics(labels, run, qs)["ndcg@10"]
            res[name] = float(np.mean([per[q] for q in qs]))
        print(f"{tag}: validation nDCG@10 {res['val']:.4f} (zELO grades)  test nDCG@10 {res['test']:.4f} (qrels)",
              flush=True)

    params = [adapter] if adapter is not None else list(model.model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0 if adapter is not None else 0.01)
    qs = sorted(groups)
    steps_per_epoch = max(1, len(qs) // args.queries_per_step)
    total = int(args.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, (total - s) / total))
    evaluate("step 0")
    step = 0
    while step < total:
        perm = rng.permutation(len(qs))
        for s in range(0, steps_per_epoch * args.queries_per_step, args.queries_per_step):
            if step >= total:
                break
            model.train()
            batch = [qs[i] for i in perm[s:s + args.queries_per_step]]
            if args.mode == "full":
                picked = []
                for q in batch:
                    order = np.argsort([-c for _, c in groups[q]])
                    half = args.group // 2
                    rest = rng.choice(order[half:], size=min(args.group - half, len(order) - half), replace=False)
                    picked.append([groups[q][i] for i in list(order[:half]) + rest.tolist()])
                dv = embed([dt[d] for g in picked for d, _ in g], grad=True)
            else:
                picked = [groups[q] for q in batch]  # every judged candidate of each query
                dv = frozen_docs[[row[d] for g in picked for d, _ in g]]
            qv = query_vectors([qt[q] for q in batch], grad=True)
            scores = 20.0 * qv @ dv.T  # the bi-encoder's scale at step 0
            loss, off = 0.0, 0
            for i, g in enumerate(picked):
                own = torch.arange(off, off + len(g))
                off += len(g)
                target = torch.softmax(torch.tensor([c for _, c in g], dtype=torch.float32) / args.tau, 0)
                logp = torch.log_softmax(scores[i, own] if args.no_in_batch else scores[i], 0)
                loss = loss - (target * (logp if args.no_in_batch else logp[own])).sum()
            loss = loss / len(picked)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if args.mode == "full" and step % args.eval_every == 0:
                evaluate(f"step {step}")
        if args.mode != "full":
            evaluate(f"epoch {step // steps_per_epoch} (step {step})")
    if args.mode == "full" and step % args.eval_every:
        evaluate(f"step {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
