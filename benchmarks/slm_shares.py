"""The pairwise-SLM loop on Cranfield at teacher shares of 10, 25 and 50 % (issue #20): what the
SLM's votes cost in agreement, in Elo (Kendall τ) and in the reranker trained on them.

Phase ``judge`` (in ``.venv-vllm``: the SLM judges through ``ray.data.llm``): for each share,
``zelo slm`` on the demo run's training queries — the simulated ensemble judges the teacher pairs,
SmolLM2-135M is distilled on them and judges the rest — plus the ensemble on every pair (the
reference). Phase ``train`` (in ``.venv``): the demo's reranker trained on each variant's targets
(the reference, each share's ensemble-only Elo at that budget, each share's mixed Elo) and
evaluated on the Cranfield test queries against hybrid retrieval (paired bootstrap CIs).

Scaled to fit 2 cores: ``--train-queries`` queries, top ``--top-n`` candidates, graph degree 4,
documents cut to ``--doc-chars`` characters for the SLM. The ensemble is the demo's simulated
one (qrels-driven): SIMULATION.

    .venv-vllm/bin/python -m benchmarks.slm_shares judge --out runs/bench-slm
    .venv/bin/python -m benchmarks.slm_shares train --out runs/bench-slm --json docs/bench/slm_shares.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHARES = (0.1, 0.25, 0.5)


def _workdir(out: Path, name: str, source: Path) -> Path:
    """A run directory that shares the demo run's collection, indexes and candidates."""
    w = out / name
    w.mkdir(parents=True, exist_ok=True)
    for part in ("data", "index", "candidates.parquet"):
        if not (w / part).exists():
            (w / part).symlink_to((source / part).resolve())
    return w


def _cfg(args, name: str, extra: list[str] = ()):
    from zelo_ray.config import load_config

    w = _workdir(Path(args.out), name, Path(args.source))
    return load_config(None, [f"data.workdir={w}", "annotate.executor=ray", f"annotate.top_n={args.top_n}", "graph.k=4",
                              f"split.max_train_queries={args.train_queries}", "train.epochs=1.0", *extra])


def _split(cfg):
    from zelo_ray.data import open_collection
    from zelo_ray.layout import layout
    from zelo_ray.eval.splits import query_split

    col = open_collection(layout(cfg).data)
    return col, query_split(cfg, col)


def _train_qrels(cfg, col, split):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(col.qrels_path(cfg.split.train_split or cfg.data.split))
    return t.filter(pc.is_in(t["query_id"], value_set=pa.array(split["train"])))


def judge(args) -> None:
    import ray

    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.config import VLLMPairwiseJudgeConfig
    from zelo_ray.workflows.slm_loop import run_slm_loop

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ref = _cfg(args, "reference")
    col, split = _split(ref)
    qrels = _train_qrels(ref, col, split)
    t0 = time.perf_counter()
    run_annotate(ref, log_fn=print, qrels=qrels, queries=split["train"])
    print(f"reference: {time.perf_counter() - t0:.0f} s", flush=True)
    slm = VLLMPairwiseJudgeConfig(name="slm", kind="vllm_pairwise", model=args.base, replicas=1, gpus_per_replica=0,
                                  cpus_per_replica=1, max_doc_chars=args.doc_chars,
                                  engine_kwargs={"max_model_len": 2048, "dtype": "bfloat16", "enforce_eager": True,
                                                 "gpu_memory_utilization": 0.15})
    for share in SHARES:
        cfg = _cfg(args, f"share-{int(share * 100)}")
        d = cfg.model_dump()
        d["annotate"]["judges"].append(slm.model_dump())
        d["annotate"]["slm"].update(judge="slm", teacher_share=share, base=args.base, max_length=args.max_length,
                                    epochs=args.epochs, lr=args.lr, max_pairs=args.max_pairs, heldout=0.1,
                                    require_agreement=False)  # measure the mixed Elo even when the gate would stop
        cfg = type(cfg).model_validate(d)
        t0 = time.perf_counter()
        r = run_slm_loop(cfg, log_fn=print, qrels=qrels, queries=split["train"])
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        (Path(args.out) / f"share-{int(share * 100)}" / "loop.json").write_text(json.dumps(r, indent=2, default=str))
        print(f"share {share}: {r['wall_s']} s", flush=True)
    ray.shutdown()


def train(args) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from zelo_ray.bench.commands import write_result
    from zelo_ray.layout import layout
    from zelo_ray.eval.rerank import evaluate_reranker
    from zelo_ray.train.stage import run_train_stage
    from zelo_ray.workflows.slm_loop import elo_tau

    out = Path(args.out)
    ref_z = pq.read_table(out / "reference" / "annotate" / "zelo.parquet")
    variants = [("ensemble, every pair", "reference", None)]
    for share in SHARES:
        n = f"share-{int(share * 100)}"
        variants += [(f"ensemble only, {share:.0%} of pairs", n, f"{out}/{n}/annotate/slm/teacher"),
                     (f"ensemble {share:.0%} + SLM", n, None)]
    rows = []
    for label, name, annotate_dir in variants:
        cfg = _cfg(args, name, [f"annotate.output={annotate_dir}"] if annotate_dir else [])
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"output": str(
            out / name / ("train-teacher" if annotate_dir else "train"))})})
        col, split = _split(cfg)
        t0 = time.perf_counter()
        run_train_stage(cfg, log=lambda *_: None, split=split)
        m = evaluate_reranker(cfg, col, split["test"], {"reranker": str(layout(cfg).train / "model")},
                              log=lambda *_: None)
        z = pq.read_table(layout(cfg).annotate / "zelo.parquet")
        tau = elo_tau(ref_z, z)["tau"].drop_null().to_numpy()
        row = {"variant": label, "ndcg@10": m["reranker"]["ndcg@10"],
               "delta_vs_hybrid": m["reranker"]["delta_vs_hybrid"]["ndcg@10"],
               "hybrid_ndcg@10": m["hybrid"]["ndcg@10"]["mean"],
               "tau_vs_full_ensemble": round(float(np.mean(tau)), 4) if len(tau) else None,
               "wall_s": round(time.perf_counter() - t0, 1)}
        loop = out / name / "loop.json"
        if loop.exists() and not annotate_dir and name != "reference":
            row["slm_vs_full_ensemble"] = _slm_agreement(out / "reference" / "annotate", out / name / "annotate")
            r = json.loads(loop.read_text())
            row.update(teacher_share=r["teacher_share"], pairs=r["pairs"], saving=r["saving"],
                       tau_ensemble_only_vs_mixed=r["tau_ensemble_only_vs_mixed"]["mean"],
                       distillation={k: r["distillation"].get(k) for k in ("steps", "train_pairs", "wall_s",
                                                                           "heldout_before", "heldout")},
                       loop_wall_s=r.get("wall_s"))
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
    write_result({"benchmark": "slm_shares", "label": "SIMULATION (ensemble: simulated judges from qrels)",
                  "train_queries": args.train_queries, "top_n": args.top_n, "test_queries": len(split["test"]),
                  "base": args.base, "rows": rows, "command": " ".join(sys.argv)}, args.json)


def _slm_agreement(reference: Path, mixed: Path) -> dict:
    """The SLM's verdicts on the pairs it judged vs the ensemble's verdicts on the same pairs (the
    reference run judged every pair), on pairs the ensemble decided."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ref = pq.read_table(reference / "pair_outcomes.parquet", columns=["pair_id", "p_a"])
    mix = pq.read_table(mixed / "pair_outcomes.parquet", columns=["pair_id", "p_a", "source"])
    mix = mix.filter(pc.equal(mix["source"], "slm")).rename_columns(["pair_id", "p_slm", "source"])
    j = mix.join(ref, keys="pair_id")
    p_ens = j["p_a"].to_numpy(zero_copy_only=False).astype(float)
    p_slm = j["p_slm"].to_numpy(zero_copy_only=False).astype(float)
    ok = np.isfinite(p_ens) & np.isfinite(p_slm) & (np.abs(p_ens - 0.5) > 1e-9)
    agree = (p_slm[ok] > 0.5) == (p_ens[ok] > 0.5)
    return {"decided_pairs": int(ok.sum()), "agreement": round(float(agree.mean()), 4) if ok.any() else None,
            "slm_prefers_a": round(float(np.mean(p_slm[ok] > 0.5)), 4) if ok.any() else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("phase", choices=["judge", "train"])
    ap.add_argument("--out", default="runs/bench-slm")
    ap.add_argument("--source", default="runs/cranfield", help="the demo's run directory (collection, candidates)")
    ap.add_argument("--base", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--train-queries", type=int, default=40)
    ap.add_argument("--top-n", type=int, default=30)
    ap.add_argument("--doc-chars", type=int, default=300)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--max-pairs", type=int, default=150)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--json")
    args = ap.parse_args()
    (judge if args.phase == "judge" else train)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
