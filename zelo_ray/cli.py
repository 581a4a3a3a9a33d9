"""The `zelo` command line.

    zelo demo                      index → retrieve → evaluate → simulated Elo (README command)
    zelo index / retrieve          first-stage retrieval on a collection
    zelo annotate                  pairs → LLM (or simulated) judges → Elo → calibrated targets
    zelo evaluate --run DIR        nDCG@10, Recall@100, MRR@10 with bootstrap CIs
    zelo simulate                  the zELO core on simulated data
    zelo bench {elo,sampling,model-fit,retrieval}
    zelo config [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zelo_ray.bench.commands import add_bench_commands, write_result
from zelo_ray.config import ConfigError, load_config
from zelo_ray.data.schema import DataError
from zelo_ray.faults import StageFailed
from zelo_ray.judges.openai_judge import JudgeSetupError
from zelo_ray.layout import layout


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (default: the embedded default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set elo.model=bradley_terry (repeatable)")


def cmd_simulate(args: argparse.Namespace) -> int:
    from zelo_ray.workflows.simulate import run_simulation

    cfg = load_config(args.config, args.overrides)
    if args.output:
        cfg.simulate.output_dir = args.output
    run_simulation(cfg)
    return 0


def _stage_config(args: argparse.Namespace):
    overrides = list(args.overrides)
    if getattr(args, "dataset", None):
        overrides.append(f"data.dataset={args.dataset}")
    if getattr(args, "workdir", None):
        overrides.append(f"data.workdir={args.workdir}")
    if getattr(args, "split", None):
        overrides.append(f"data.split={args.split}")
    return load_config(args.config, overrides)


def cmd_index(args: argparse.Namespace) -> int:
    from zelo_ray.retrieval.indexing import run_index

    write_result(run_index(_stage_config(args)), args.report)
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from zelo_ray.retrieval.pipeline import run_retrieve

    cfg = _stage_config(args)
    if args.output:
        cfg.retrieve.output = args.output
    report = run_retrieve(cfg)
    write_result(report, args.report)
    _warn_failed("retrieve", report["failed"], "queries")
    return 0


def _warn_failed(stage: str, failed: dict, what: str) -> None:
    if failed["failed"]:
        print(f"zelo {stage}: {failed['failed']:,} of {failed['total']:,} {what} failed and were skipped "
              f"(listed in {failed['errors']}; a re-run retries only them). Most common: {failed['most_common']}",
              file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from zelo_ray.data import prepare
    from zelo_ray.eval.evaluate import evaluate_with_config

    cfg = _stage_config(args)
    col = prepare(cfg.data.dataset, layout(cfg).data)
    if args.reranker:
        return cmd_evaluate_reranker(args, cfg)
    report = evaluate_with_config(col, cfg.data.split, args.run or layout(cfg).candidates, cfg.evaluate)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    meta = report["meta"]
    print(f"{meta['dataset']} qrels/{meta['split']}: {meta['judged_queries']} judged queries "
          f"({meta['excluded_queries_without_judgments']} without judgments excluded); "
          f"{int(meta['confidence'] * 100)}% bootstrap CIs over {meta['bootstrap']} resamples")
    for system in ("bm25", "dense", "hybrid"):
        m = report[system]
        print(f"{system:7s}" + "  ".join(f"{k} {m[k]['mean']:.4f} [{m[k]['ci_low']:.4f}, {m[k]['ci_high']:.4f}]"
                                       for k in ("ndcg@10", "recall@100", "mrr@10")))
    return 0


def cmd_evaluate_reranker(args: argparse.Namespace, cfg) -> int:
    from zelo_ray.data import open_collection
    from zelo_ray.train.stage import evaluate_reranker, query_split

    col = open_collection(layout(cfg).data)
    split = query_split(cfg, col)
    queries = split["test"] if args.queries == "test" else sorted(set(split["train"]) | set(split["test"]))
    ckpts = {f"reranker{i or ''}": c for i, c in enumerate(args.reranker)}
    report = evaluate_reranker(cfg, col, queries, ckpts, log=lambda m: print(m, file=sys.stderr))
    report["meta"] = {"dataset": col.name, "split": cfg.data.split, "queries": args.queries, "n_queries": len(queries),
                      "checkpoints": ckpts, "rerank_depth": cfg.rerank.depth}
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{col.name} qrels/{cfg.data.split}: {len(queries)} {args.queries} queries; reranking the hybrid "
          f"top-{cfg.rerank.depth}")
    rows = ["bm25", "dense", "hybrid", *(r for c in ckpts for r in (c, f"{c}_model_only") if r in report)]
    width = max(len(r) for r in rows) + 1
    for system in rows:
        m = report[system]
        print(f"{system:{width}s}" + "  ".join(f"{k} {m[k]['mean']:.4f} [{m[k]['ci_low']:.4f}, {m[k]['ci_high']:.4f}]"
                                         for k in ("ndcg@10", "recall@100", "mrr@10")))
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from zelo_ray.workflows.refine import run_refine

    write_result(run_refine(_stage_config(args)), args.report)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from zelo_ray.workflows.tune import run_tune

    write_result(run_tune(_stage_config(args)), args.report)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from zelo_ray.data import open_collection
    from zelo_ray.train.examples import doc_texts, query_texts
    from zelo_ray.train.pairwise import pair_rows, train_pairwise

    cfg = _stage_config(args)
    path = layout(cfg).annotate / "pair_outcomes.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no judged pairs; run `zelo annotate` first")
    t = pq.read_table(path)
    if args.max_pairs:
        t = t.slice(0, args.max_pairs)
    col = open_collection(layout(cfg).data)
    rows = pair_rows(t, query_texts(col), doc_texts(col, t["doc_a"].to_pylist() + t["doc_b"].to_pylist()))
    out = args.output or str(layout(cfg).pairwise)
    r = train_pairwise(rows, base=args.base, out=out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       max_length=args.max_length)
    write_result(r, args.report)
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from zelo_ray.annotate.run import run_annotate

    cfg = _stage_config(args)
    if args.output:
        cfg.annotate.output = args.output
    report = run_annotate(cfg)
    summary = {k: report[k] for k in ("label", "queries", "pairs", "cross_pairs", "judge_calls",
                                      "asked_this_run", "reused", "missing_votes", "total_cost")}
    summary["files"] = report["files"]
    summary["failed"] = report["failed"]
    write_result(summary, args.report)
    _warn_failed("annotate", report["failed"], "judge calls")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from zelo_ray.workflows.demo import run_quickstart

    if args.out:
        args.workdir = args.out
    cfg = _stage_config(args)
    if args.test_split:
        cfg.data.split = args.test_split
    if args.train_split:
        cfg.split.train_split = args.train_split
    if args.max_train_queries:
        cfg.split.max_train_queries = args.max_train_queries
    after = None
    if cfg.output_uri():
        from zelo_ray.storage import push

        def after(stage: str) -> None:
            n = push(layout(cfg).workdir, cfg.output_uri())
            print(f"zelo: {stage} done; pushed {n} files to {cfg.output_uri()}", file=sys.stderr)
    run_quickstart(cfg, after_stage=after)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from zelo_ray.train.stage import run_train_stage

    cfg = _stage_config(args)
    if args.output:
        cfg.train.output = args.output
    card = run_train_stage(cfg)
    write_result({k: card.get(k) for k in ("fingerprint", "final_metrics", "wall_s", "total_steps", "training_groups")},
           args.report)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from zelo_ray.serve.run import start_server

    cfg = _stage_config(args)
    for name in ("checkpoint", "host", "port"):
        if getattr(args, name) is not None:
            setattr(cfg.serve, name, getattr(args, name))
    start_server(cfg, log=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    if args.markdown:
        from zelo_ray.config import reference_markdown

        print(reference_markdown())
        return 0
    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zelo", description="zELO reranker training on Ray")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulated end-to-end of the zELO core (demo)")
    _add_config_args(p)
    p.add_argument("--output", help="output directory (overrides simulate.output_dir)")
    p.set_defaults(func=cmd_simulate)

    def stage(name: str, help: str, aliases=()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, aliases=list(aliases))
        _add_config_args(p)
        p.add_argument("--dataset", help="BEIR folder, shared collection name or ir_datasets id "
                       "(sets data.dataset)")
        p.add_argument("--workdir", help="run directory (sets data.workdir; {dataset} expands)")
        return p

    p = stage("demo", "index → retrieve → annotate → train → rerank → evaluate: the whole pipeline from one "
              "config (`full` is the same command; pipelines/full.py runs it under ray job submit)",
              aliases=["full"])
    p.add_argument("--out", help="run directory (same as --workdir); metrics.json lands here")
    p.add_argument("--train-split", help="qrels split of the training queries (default: 'train' if the "
                   "collection has one, else a seeded split of the test split's queries)")
    p.add_argument("--test-split", help="qrels split of the test queries (sets data.split; default test)")
    p.add_argument("--max-train-queries", type=int, help="use at most N training queries")
    p.set_defaults(func=cmd_demo)
    p = stage("train", "train a reranker on the zELO targets with Ray Train (resumable)")
    p.add_argument("--output", help="training directory (default <workdir>/train)")
    p.add_argument("--report", help="also write the JSON summary here")
    p.set_defaults(func=cmd_train)
    p = stage("serve", "serve a reranker with Ray Serve (Cohere /v2/rerank, ZeroEntropy /v1/models/rerank)")
    p.add_argument("--checkpoint", help="model folder (sets serve.checkpoint; default <workdir>/train/model)")
    p.add_argument("--host", help="bind address (sets serve.host)")
    p.add_argument("--port", type=int, help="port (sets serve.port)")
    p.set_defaults(func=cmd_serve)
    p = stage("index", "prepare a collection and build its BM25 and dense indexes (restartable)")
    p.add_argument("--report", help="also write the JSON report here")
    p.set_defaults(func=cmd_index)
    p = stage("retrieve", "BM25 + dense top-k fused by RRF for every query → candidates Parquet")
    p.add_argument("--output", help="candidates directory (default <workdir>/candidates.parquet)")
    p.add_argument("--report", help="also write the JSON report here")
    p.set_defaults(func=cmd_retrieve)
    p = stage("annotate", "pairs → judges → Elo → calibrated targets (resumable; see docs/judging.md)")
    p.add_argument("--output", help="annotation directory (default <workdir>/annotate)")
    p.add_argument("--report", help="also write the JSON summary here (report.json has everything)")
    p.set_defaults(func=cmd_annotate)
    p = stage("evaluate", "nDCG@10 / Recall@100 / MRR@10 of BM25, dense and hybrid, with CIs")
    p.add_argument("--split", help="qrels split (sets data.split; default test)")
    p.add_argument("--run", help="candidates Parquet (default <workdir>/candidates.parquet)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--output", help="also write the JSON report here")
    p.add_argument("--reranker", action="append", default=[], metavar="CHECKPOINT",
                   help="also rerank the hybrid top-<rerank.depth> with this model folder (repeatable); "
                   "evaluates the held-out test queries of the query split")
    p.add_argument("--queries", choices=["test", "all"], default="test",
                   help="with --reranker: the held-out test queries (default) or all judged queries")
    p.set_defaults(func=cmd_evaluate)
    p = stage("refine", "refinement pass: judge (best-labelled doc, doc above it) where the reranker fails, "
              "refit, retrain")
    p.add_argument("--report", help="also write the JSON report here")
    p.set_defaults(func=cmd_refine)
    p = stage("tune", "Ray Tune (ASHA) over loss, lr, Elo model, k, candidates per query")
    p.add_argument("--report", help="also write the JSON report here")
    p.set_defaults(func=cmd_tune)
    p = stage("distill", "train the pairwise SLM on the ensemble's pair outcomes (a vLLM-loadable folder)")
    p.add_argument("--base", required=True, help="local causal-LM folder (e.g. models/smollm2-135m-instruct)")
    p.add_argument("--output", help="model folder (default <workdir>/pairwise-slm)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--max-pairs", type=int, help="use the first N judged pairs only")
    p.add_argument("--report", help="also write the JSON report here")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("config", help="print the effective configuration")
    _add_config_args(p)
    p.add_argument("--markdown", action="store_true",
                   help="print the field reference (docs/configuration.md) instead")
    p.set_defaults(func=cmd_config)

    add_bench_commands(sub)
    return parser


def _run_synced(args: argparse.Namespace) -> int:
    """Stages with ``data.output_uri`` set: pull the run directory first, push it after (also on
    failure: what was paid for must reach durable storage)."""
    if not hasattr(args, "overrides") or not hasattr(args, "dataset"):
        return args.func(args)
    if getattr(args, "out", None):
        args.workdir = args.out
    cfg = _stage_config(args)
    uri = cfg.output_uri()
    if not uri:
        return args.func(args)
    from zelo_ray.storage import pull, push

    n = pull(uri, layout(cfg).workdir)
    print(f"zelo: pulled {n} files from {uri} into {layout(cfg).workdir}", file=sys.stderr)
    try:
        return args.func(args)
    finally:
        n = push(layout(cfg).workdir, uri)
        print(f"zelo: pushed {n} files from {layout(cfg).workdir} to {uri}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run_synced(args)
    except (ConfigError, DataError, FileNotFoundError, JudgeSetupError) as exc:
        print(f"zelo: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"zelo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
