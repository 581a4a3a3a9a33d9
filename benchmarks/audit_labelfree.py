"""`zelo audit` against human qrels on the shared collections: does a label-free audit of four
systems (BM25, dense, hybrid, the trained reranker) order them as human-qrels nDCG@10 does?

Per collection, on the held-out test queries of `zelo bench rerank` (runs/bench-ablation/<ds>):
the four systems are written as TREC run files, the test queries as a JSONL query log, and
`zelo audit` runs on them exactly as a user would (simulated judges driven by the qrels:
SIMULATION). Recorded: each system's nDCG@10 under human and zELO labels, Kendall τ between the two
orders of the systems, the Pearson r of per-(system, query) nDCG@10, and the same for other grade
shares (regraded from the audit's own zelo.parquet, no new judging).

    .venv/bin/python -m benchmarks.audit_labelfree --json docs/bench/audit_labelfree.json

Needs `zelo bench rerank` to have run (its candidates and reranked test queries).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import kendalltau, pearsonr

from zelo_ray.bench.commands import write_result
from zelo_ray.data import open_collection
from zelo_ray.data.trec import write_run
from zelo_ray.eval.audit import score_systems
from zelo_ray.eval.evaluate import rankings_from_candidates
from zelo_ray.eval.labelfree import graded_qrels
from zelo_ray.eval.metrics import bootstrap_ci, per_query_metrics
from zelo_ray.scoring.rerank import rankings_from_reranked

DATASETS = ("cranfield", "cisi", "med", "cacm", "vaswani")
SHARES = {"default 5/10/15%": (0.05, 0.10, 0.15), "10/15/25%": (0.10, 0.15, 0.25), "top 10%": (0.10,)}


def prepare(ds: str, src: Path, work: Path) -> tuple[dict, list[str]]:
    reranked = pq.read_table(src / "train" / "reranked-reranker.parquet")
    queries = sorted(set(reranked["query_id"].to_pylist()))
    runs = rankings_from_candidates(src / "candidates.parquet", queries, 100)
    runs["reranker"] = rankings_from_reranked(reranked)
    work.mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        write_run(run, work / f"{name}.trec", tag=name)
    col = open_collection(src / "data")
    q = col.queries()
    text = dict(zip(q["query_id"].to_pylist(), q["text"].to_pylist()))
    (work / "queries.jsonl").write_text("".join(json.dumps({"query_id": x, "text": text[x]}) + "\n" for x in queries))
    return runs, queries


def compare(human: dict, zelo: dict, runs: dict, queries: list[str]) -> dict:
    qs = [q for q in queries if any(v > 0 for v in human.get(q, {}).values())
          and any(v > 0 for v in zelo.get(q, {}).values())]
    h = {s: per_query_metrics(human, r, qs)["ndcg@10"] for s, r in runs.items()}
    z = {s: per_query_metrics(zelo, r, qs)["ndcg@10"] for s, r in runs.items()}
    names = list(runs)
    mh = [float(np.mean([h[s][q] for q in qs])) for s in names]
    mz = [float(np.mean([z[s][q] for q in qs])) for s in names]
    xh = [h[s][q] for s in names for q in qs]
    xz = [z[s][q] for s in names for q in qs]
    # τ over four systems is dominated by near-ties; the pairs human qrels separate with a paired
    # CI that excludes 0 are the ones an audit must get right
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    dh = np.array([[h[a][q] - h[b][q] for q in qs] for a, b in pairs])
    dz = np.array([[z[a][q] - z[b][q] for q in qs] for a, b in pairs])
    ch, cz = bootstrap_ci(dh, n_boot=1000, seed=0), bootstrap_ci(dz, n_boot=1000, seed=0)
    decided = [k for k in range(len(pairs)) if ch[k, 0] > 0 or ch[k, 1] < 0]
    agree = [k for k in decided if np.sign(dz[k].mean()) == np.sign(dh[k].mean())]
    zelo_sig = [k for k in agree if cz[k, 0] > 0 or cz[k, 1] < 0]
    return {"human_decided_pairs": [f"{pairs[k][0]} vs {pairs[k][1]}" for k in decided],
            "same_sign": len(agree), "zelo_also_significant": len(zelo_sig),
            "undecided_pairs": [f"{a} vs {b} (human Δ {dh[k].mean():+.3f}, zELO Δ {dz[k].mean():+.3f})"
                                for k, (a, b) in enumerate(pairs) if k not in decided],
            "queries": len(qs), "human": dict(zip(names, np.round(mh, 4).tolist())),
            "zelo": dict(zip(names, np.round(mz, 4).tolist())),
            "kendall_tau": round(float(kendalltau(mh, mz).statistic), 4),
            "pearson_per_query": round(float(pearsonr(xh, xz).statistic), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--source", default="runs/bench-ablation", help="`zelo bench rerank`'s workdir")
    ap.add_argument("--workdir", default="runs/bench-audit")
    ap.add_argument("--json")
    args = ap.parse_args()
    out = {"label": "SIMULATION", "command": " ".join(sys.argv), "datasets": {}}
    for ds in args.datasets:
        src, work = Path(args.source) / ds, Path(args.workdir) / ds
        runs, queries = prepare(ds, src, work)
        cmd = [sys.executable, "-m", "zelo_ray.cli", "audit", "--dataset", ds, "--workdir", str(work),
               "--queries", str(work / "queries.jsonl"), "--label", "bench", "--report", str(work / "audit-summary.json")]
        for name in runs:
            cmd += ["--run", f"{name}={work / (name + '.trec')}"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        audit = json.loads((work / "audit" / "audit.json").read_text())
        human = open_collection(src / "data").qrels("test")
        z = pq.read_table(work / "audit" / "zelo.parquet") if (work / "audit" / "zelo.parquet").exists() else \
            pq.read_table(work / "audit" / "annotate" / "zelo.parquet")
        res = {"audit_wall_s": round(wall, 1), "judge_calls": audit["judging"]["judge_calls"],
               "pool_documents": audit["pool"]["documents"], "audited_queries": audit["judged_queries"],
               "audit_ndcg": {s: m["ndcg@10"]["mean"] for s, m in audit["systems"].items()}}
        for name, shares in SHARES.items():
            res[name] = compare(human, graded_qrels(z, shares=shares), runs, queries)
        # the audit's own numbers, from its own graded labels, against human nDCG@10 on the same queries
        own = score_systems(graded_qrels(z, shares=tuple(audit["grades"])), runs, queries, k=10, n_boot=0)
        res["human_ndcg_all_test_queries"] = {s: round(float(np.mean(list(per_query_metrics(human, r, queries)["ndcg@10"].values()))), 4)
                                              for s, r in runs.items()}
        res["audit_ndcg_all_test_queries"] = {s: m["ndcg@10"]["mean"] for s, m in own["systems"].items()}
        out["datasets"][ds] = res
        d = res["default 5/10/15%"]
        print(f"[{ds}] {d['queries']} queries: " + ", ".join(f"{s} {d['human'][s]:.3f}/{d['zelo'][s]:.3f}" for s in runs)
              + f"; τ {d['kendall_tau']}, r {d['pearson_per_query']}; audit {wall:.0f} s", file=sys.stderr)
    write_result(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
