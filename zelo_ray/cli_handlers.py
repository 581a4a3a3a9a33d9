"""What each `zelo` subcommand does with its parsed arguments and the loaded config: call one
stage or workflow, print (and with ``--report`` write) its summary, warn about skipped records.
The parser that routes to them is :mod:`zelo_ray.cli`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zelo_ray.bench.commands import write_result


def _warn_failed(stage: str, failed: dict, what: str) -> None:
    if failed["failed"]:
        print(f"zelo {stage}: {failed['failed']:,} of {failed['total']:,} {what} failed and were skipped "
              f"(listed in {failed['errors']}; a re-run retries only them). Most common: {failed['most_common']}",
              file=sys.stderr)


def log(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_simulate(args, cfg, sync) -> int:
    from zelo_ray.workflows.simulate import run_simulation

    if args.output:
        cfg.simulate.output_dir = args.output
    run_simulation(cfg)
    return 0


def report_of(run):
    """A command that runs ``run(cfg)`` and prints (and with ``--report`` writes) what it returns."""
    def cmd(args, cfg, sync) -> int:
        write_result(run(cfg), args.report)
        return 0
    return cmd


def cmd_retrieve(args, cfg, sync) -> int:
    from zelo_ray.retrieval.pipeline import run_retrieve

    report = run_retrieve(cfg)
    write_result(report, args.report)
    _warn_failed("retrieve", report["failed"], "queries")
    return 0


def cmd_evaluate(args, cfg, sync) -> int:
    from zelo_ray.eval.table import metrics_lines
    from zelo_ray.workflows.evaluate import run_evaluate

    report, title, systems = run_evaluate(cfg, run=args.run, rerankers=args.reranker, queries=args.queries, log=log)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else "\n".join([title, *metrics_lines(report, systems)]))
    return 0


def cmd_distill(args, cfg, sync) -> int:
    from zelo_ray.workflows.distill import run_distill

    write_result(run_distill(cfg, base=args.base, output=args.output, epochs=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, max_length=args.max_length,
                             max_pairs=args.max_pairs), args.report)
    return 0


def cmd_annotate(args, cfg, sync) -> int:
    from zelo_ray.annotate.run import run_annotate

    report = run_annotate(cfg)
    summary = {k: report[k] for k in ("label", "queries", "pairs", "cross_pairs", "judge_calls", "asked_this_run",
                                      "reused", "missing_votes", "total_cost", "files", "failed")}
    write_result(summary, args.report)
    _warn_failed("annotate", report["failed"], "judge calls")
    return 0


def cmd_demo(args, cfg, sync) -> int:
    from zelo_ray.workflows.demo import run_quickstart

    run_quickstart(cfg, after_stage=sync.push)
    return 0


def cmd_train(args, cfg, sync) -> int:
    from zelo_ray.train.stage import run_train_stage

    card = run_train_stage(cfg)
    write_result({k: card.get(k) for k in ("fingerprint", "final_metrics", "wall_s", "total_steps",
                                           "training_groups")}, args.report)
    return 0


def cmd_serve(args, cfg, sync) -> int:
    from zelo_ray.serve.run import start_server

    for name in ("checkpoint", "host", "port"):
        if getattr(args, name) is not None:
            setattr(cfg.serve, name, getattr(args, name))
    start_server(cfg, log=log)
    return 0


def cmd_config(args, cfg, sync) -> int:
    import yaml

    from zelo_ray.config import reference_markdown

    print(reference_markdown() if args.markdown else yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    return 0
