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

from zelo_ray.config import ConfigError, load_config
from zelo_ray.data.schema import DataError
from zelo_ray.judges.openai_judge import JudgeSetupError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (default: the embedded default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set elo.model=bradley_terry (repeatable)")


def _write(result: dict, path: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def cmd_simulate(args: argparse.Namespace) -> int:
    from zelo_ray.demo import run_simulation

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

    _write(run_index(_stage_config(args)), args.report)
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from zelo_ray.retrieval.pipeline import run_retrieve

    cfg = _stage_config(args)
    if args.output:
        cfg.retrieve.output = args.output
    _write(run_retrieve(cfg), args.report)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from zelo_ray.data import prepare
    from zelo_ray.eval.evaluate import evaluate_with_config
    from zelo_ray.retrieval.indexing import index_paths
    from zelo_ray.retrieval.pipeline import candidates_path

    cfg = _stage_config(args)
    col = prepare(cfg.data.dataset, index_paths(cfg).data)
    report = evaluate_with_config(col, cfg.data.split, args.run or candidates_path(cfg), cfg.evaluate)
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


def cmd_annotate(args: argparse.Namespace) -> int:
    from zelo_ray.annotate.run import run_annotate

    cfg = _stage_config(args)
    if args.output:
        cfg.annotate.output = args.output
    report = run_annotate(cfg)
    summary = {k: report[k] for k in ("label", "queries", "pairs", "cross_pairs", "judge_calls",
                                      "asked_this_run", "reused", "missing_votes", "total_cost")}
    summary["files"] = report["files"]
    _write(summary, args.report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from zelo_ray.quickstart import run_quickstart

    run_quickstart(_stage_config(args))
    return 0


def cmd_bench_retrieval(args: argparse.Namespace) -> int:
    from zelo_ray.bench import retrieval

    r = retrieval.run(n_docs=args.docs, n_queries=args.queries, workdir=args.workdir,
                      embed_sample=args.embed_sample, k=args.k, seed=args.seed)
    _write({"benchmark": "retrieval_throughput", **r}, args.json)
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    from zelo_ray.bench import retrieval

    r = retrieval.quality(args.datasets, workdir=args.workdir, overrides=args.overrides)
    _write({"benchmark": "retrieval_quality", **r}, args.json)
    return 0


def cmd_bench_bm25(args: argparse.Namespace) -> int:
    from zelo_ray.bench import retrieval

    _write({"benchmark": "bm25_variants", **retrieval.bm25_variants(args.datasets)}, args.json)
    return 0


def cmd_bench_judging(args: argparse.Namespace) -> int:
    from zelo_ray.bench import judging

    r = judging.throughput(calls=args.calls, latency=args.latency, concurrency=args.concurrency,
                           fail=args.fail, executors=tuple(args.executors))
    _write(r, args.json)
    return 0


def cmd_bench_annotate_scale(args: argparse.Namespace) -> int:
    from zelo_ray.bench import judging

    r = judging.scale(queries=args.queries, docs=args.docs, judges=args.judges, executor=args.executor,
                      workdir=args.workdir)
    _write(r, args.json)
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


def cmd_bench_elo(args: argparse.Namespace) -> int:
    from zelo_ray.bench import elo_throughput

    results = []
    for model in args.models:
        r = elo_throughput.as_dict(elo_throughput.run(
            n_queries=args.queries, n_docs=args.docs, k=args.k, model=model, chunk=args.chunk,
            choix_sample=args.choix_sample, stderr=args.stderr, seed=args.seed,
            progress=not args.quiet))
        results.append(r)
        print(f"{model}: {r['queries']} queries in {r['fit_seconds']:.2f}s "
              f"({r['queries_per_s']:.0f} q/s), peak RSS {r['peak_rss_mb']:.0f} MiB, "
              f"{r['speedup_vs_choix_batched']:.0f}x choix per query", file=sys.stderr)
    _write({"benchmark": "elo_throughput", "results": results}, args.json)
    return 0


def cmd_bench_sampling(args: argparse.Namespace) -> int:
    from zelo_ray.bench import sampling

    r = sampling.run(n_queries=args.queries, n_docs=args.docs, budgets=tuple(args.budgets),
                     model=args.model, clamp=not args.soft, seed=args.seed,
                     progress=not args.quiet)
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        sampling.plot(r, args.plot)
    _write({"benchmark": "sampling_fidelity", **r}, args.json)
    return 0


def cmd_bench_model_fit(args: argparse.Namespace) -> int:
    from zelo_ray.bench import model_fit

    r = model_fit.run(n_queries=args.queries, n_docs=args.docs, votes=tuple(args.votes),
                      seed=args.seed)
    _write({"benchmark": "model_fit", **r}, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zelo", description="zELO reranker training on Ray")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulated end-to-end of the zELO core (demo)")
    _add_config_args(p)
    p.add_argument("--output", help="output directory (overrides simulate.output_dir)")
    p.set_defaults(func=cmd_simulate)

    def stage(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        _add_config_args(p)
        p.add_argument("--dataset", help="BEIR folder, shared collection name or ir_datasets id "
                       "(sets data.dataset)")
        p.add_argument("--workdir", help="run directory (sets data.workdir; {dataset} expands)")
        return p

    p = stage("demo", "index → retrieve → evaluate → simulated Elo on a real collection")
    p.set_defaults(func=cmd_demo)
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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("config", help="print the effective configuration")
    _add_config_args(p)
    p.add_argument("--markdown", action="store_true",
                   help="print the field reference (docs/configuration.md) instead")
    p.set_defaults(func=cmd_config)

    bench = sub.add_parser("bench", help="benchmarks (results go to docs/benchmarks.md)")
    bsub = bench.add_subparsers(dest="bench", required=True)

    p = bsub.add_parser("elo", help="Elo fit throughput vs choix")
    p.add_argument("--queries", type=int, default=112_000)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--chunk", type=int, default=8192, help="queries per fit call")
    p.add_argument("--models", nargs="+", default=["thurstone", "bradley_terry"],
                   choices=["thurstone", "bradley_terry"])
    p.add_argument("--choix-sample", type=int, default=100, help="queries timed with choix")
    p.add_argument("--stderr", action="store_true", help="also compute standard errors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench_elo)

    p = bsub.add_parser("sampling", help="cycle vs random vs all-pairs sampling fidelity")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 200, 400, 800, 4950])
    p.add_argument("--model", default="thurstone", choices=["thurstone", "bradley_terry"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soft", action="store_true",
                   help="average raw judge scores instead of clamping to {-1, 0, 1}")
    p.add_argument("--plot", help="write the τ-vs-budget plot (PNG) here")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench_sampling)

    p = bsub.add_parser("retrieval", help="indexing and retrieval throughput on a synthetic corpus")
    p.add_argument("--docs", type=int, default=100_000, help="synthetic corpus size")
    p.add_argument("--queries", type=int, default=2000, help="queries timed per system")
    p.add_argument("--embed-sample", type=int, default=1000,
                   help="documents embedded through the Ray pipeline to measure dense indexing docs/s")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--workdir", default="runs/bench-retrieval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_retrieval)

    p = bsub.add_parser("quality", help="BM25 / dense / hybrid quality on several collections")
    p.add_argument("--datasets", nargs="+", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--workdir", default="runs/bench-quality/{dataset}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_quality)

    p = bsub.add_parser("bm25", help="BM25 alone per analyzer (nDCG@10, Recall@100, MAP)")
    p.add_argument("--datasets", nargs="+", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_bm25)

    p = bsub.add_parser("judging", help="judge calls/s against a local server with latency L, cap C")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--latency", type=float, default=0.5, help="server latency L per request (s)")
    p.add_argument("--concurrency", type=int, default=32, help="server concurrency cap C")
    p.add_argument("--fail", type=float, default=0.2, help="share of HTTP 500s in the second run")
    p.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_judging)

    p = bsub.add_parser("annotate-scale", help="pairs → simulated votes → Elo at scale (synthetic)")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--judges", type=int, default=1, help="simulated judges (1: 4M votes at the defaults)")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--workdir", help="where the synthetic run goes (default: a temp dir)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_annotate_scale)

    p = bsub.add_parser("model-fit", help="held-out likelihood of Bradley-Terry vs Thurstone")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--votes", type=int, nargs="+", default=[3, 10, 30],
                   help="Bernoulli votes per judged pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_model_fit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, FileNotFoundError, JudgeSetupError) as exc:
        print(f"zelo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
