"""The `zelo` command line: `zelo simulate`, `zelo bench {elo,sampling,model-fit}`, `zelo config`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zelo_ray.config import ConfigError, load_config


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
    except ConfigError as exc:
        print(f"zelo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
