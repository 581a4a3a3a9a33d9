"""The `zelo` command line: parse arguments, load the config, call a stage or a workflow.

    zelo demo | full               index → retrieve → annotate → train → rerank → evaluate
    zelo index / retrieve          first-stage retrieval on a collection (first-stage: both + evaluate)
    zelo annotate                  pairs → LLM (or simulated) judges → Elo → calibrated targets
    zelo train / serve             train a reranker with Ray Train; serve it with Ray Serve
    zelo evaluate [--reranker DIR] nDCG@10, Recall@100, MRR@10 with bootstrap CIs
    zelo refine / tune / distill / slm   refinement, Ray Tune, pairwise SLM, the SLM loop (docs/judging.md)
    zelo simulate                  the zELO core on simulated data
    zelo bench …                   benchmarks (zelo_ray/bench/commands.py)
    zelo audit                     label-free audit of retrieval systems (TREC runs, endpoints)
    zelo report RUN_DIR            one self-contained HTML file of a run
    zelo config [--markdown]       the effective configuration, or the field reference
"""

from __future__ import annotations

import argparse
import os
import sys

from zelo_ray.bench.arguments import add_bench_commands
from zelo_ray.cli_handlers import (cmd_annotate, cmd_config, cmd_demo, cmd_distill, cmd_evaluate, cmd_retrieve,
                                   cmd_serve, cmd_simulate, cmd_train, log, report_of)
from zelo_ray.config import ConfigError
from zelo_ray.config.loading import config_from_args
from zelo_ray.data.schema import DataError
from zelo_ray.faults import StageFailed
from zelo_ray.judges.base import JudgeSetupError
from zelo_ray.workflows import commands
from zelo_ray.layout import layout
from zelo_ray.raysession import VERBOSE_ENV
from zelo_ray.runlog import run_log
from zelo_ray.storage import Retry, RunSync, StorageError
from zelo_ray.workflows.audit import add_audit_arguments, cmd_audit
from zelo_ray.workflows.report import add_report_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zelo", description="zELO reranker training on Ray")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also show Ray's worker output and Ray Data's progress reports (by default "
                             "they stay in Ray's log files; ZELO_VERBOSE=1 does the same)")
    sub = parser.add_subparsers(dest="command", required=True)
    command = _command_adder(sub)
    _add_pipeline_commands(command)
    _add_analysis_commands(command, sub)
    add_bench_commands(sub)
    return parser


def _command_adder(sub):
    """``command(name, help, func, …)``: a subcommand with the flags every run command shares."""

    def command(name, help, func, *, run_dir=True, report=True, output=None, aliases=()):
        p = sub.add_parser(name, help=help, aliases=list(aliases))
        p.add_argument("--config", help="YAML config file (default: the embedded default)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set elo.model=bradley_terry (repeatable)")
        if run_dir:
            p.add_argument("--dataset", help="BEIR folder, shared collection name or ir_datasets id "
                           "(sets data.dataset)")
            p.add_argument("--workdir", help="run directory (sets data.workdir; {dataset} expands)")
        if output:
            p.add_argument("--output", help=output)
        if report:
            p.add_argument("--report", help="also write the JSON summary here")
        p.set_defaults(func=func, command=name, run_command=True)
        return p

    return command


def _add_pipeline_commands(command) -> None:
    """The stages and the one-call run (demo): index → retrieve → annotate → train → serve."""
    command("simulate", "simulated end-to-end of the zELO core (demo)", cmd_simulate, run_dir=False, report=False,
            output="output directory (overrides simulate.output_dir)")
    p = command("demo", "index → retrieve → annotate → train → rerank → evaluate: the whole pipeline from one "
                "config (`full` is the same command; pipelines/full.py runs it under ray job submit)", cmd_demo,
                report=False, aliases=["full"])
    p.add_argument("--out", dest="workdir", help="run directory (same as --workdir); metrics.json lands here")
    p.add_argument("--train-split", help="qrels split of the training queries (default: 'train' if the "
                   "collection has one, else a seeded split of the test split's queries)")
    p.add_argument("--test-split", help="qrels split of the test queries (sets data.split; default test)")
    p.add_argument("--max-train-queries", type=int, help="use at most N training queries")
    command("train", "train a reranker on the zELO targets with Ray Train (resumable)", cmd_train,
            output="training directory (default <workdir>/train)")
    p = command("serve", "serve a reranker with Ray Serve (Cohere /v2/rerank, ZeroEntropy /v1/models/rerank)",
                cmd_serve, report=False)
    p.add_argument("--checkpoint", help="model folder (sets serve.checkpoint; default <workdir>/train/model)")
    p.add_argument("--host", help="bind address (sets serve.host)")
    p.add_argument("--port", type=int, help="port (sets serve.port)")
    command("index", "prepare a collection and build its BM25 and dense indexes (restartable)",
            report_of(commands.run_index))
    command("retrieve", "BM25 + dense top-k fused by RRF for every query → candidates Parquet", cmd_retrieve,
            output="candidates directory (default <workdir>/candidates.parquet)")
    command("first-stage", "index → retrieve → evaluate when the split has qrels (pipelines/retrieve.py)",
            report_of(commands.run_first_stage))
    command("annotate", "pairs → judges → Elo → calibrated targets (resumable; see docs/judging.md)",
            cmd_annotate, output="annotation directory (default <workdir>/annotate)")


def _add_analysis_commands(command, sub) -> None:
    """Evaluation, refinement, tuning, distillation, audit, report and config."""
    p = command("evaluate", "nDCG@10 / Recall@100 / MRR@10 of BM25, dense and hybrid, with CIs", cmd_evaluate,
                report=False, output="also write the JSON report here")
    p.add_argument("--split", help="qrels split (sets data.split; default test)")
    p.add_argument("--run", help="candidates Parquet (default <workdir>/candidates.parquet)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--reranker", action="append", default=[], metavar="CHECKPOINT",
                   help="also rerank the hybrid top-<rerank.depth> with this model folder (repeatable); "
                   "evaluates the held-out test queries of the query split")
    p.add_argument("--queries", choices=["test", "all"], default="test",
                   help="with --reranker: the held-out test queries (default) or all judged queries")
    command("refine", "refinement pass: judge (best-labelled doc, doc above it) where the reranker fails, "
            "refit, retrain", report_of(commands.run_refine))
    command("tune", "Ray Tune (ASHA) over loss, lr, Elo model, k, candidates per query",
            report_of(commands.run_tune))
    p = command("distill", "train the pairwise SLM on the ensemble's pair outcomes (a vLLM-loadable folder)",
                cmd_distill, output="model folder (default <workdir>/pairwise-slm)")
    p.add_argument("--base", required=True, help="local causal-LM folder (e.g. models/smollm2-135m-instruct)")
    for flag, kind, default in (("--epochs", float, 1.0), ("--batch-size", int, 8), ("--lr", float, 5e-5),
                                ("--max-length", int, 512)):
        p.add_argument(flag, type=kind, default=default)
    p.add_argument("--max-pairs", type=int, help="use the first N judged pairs only")
    command("slm", "ensemble on annotate.slm.teacher_share of the pairs → distil → the SLM judges the rest",
            report_of(commands.run_slm_loop))
    add_audit_arguments(command("audit", "sample queries, pool systems' results, judge, Elo: each system's "
                                "nDCG@10 / Recall@k with CIs and its failing queries (docs/audit.md)", cmd_audit))
    add_report_command(sub)
    p = command("config", "print the effective configuration", cmd_config, run_dir=False, report=False)
    p.add_argument("--markdown", action="store_true", help="print the field reference (docs/configuration.md)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # read by ensure_ray, in this process and the job's
    try:
        if not getattr(args, "run_command", False):  # benchmarks parse their own arguments
            return args.func(args)
        cfg = config_from_args(args)
        # a run directory is pulled from data.output_uri and pushed back; library logs go to its logs/
        run_dir = hasattr(args, "dataset")
        sync = RunSync(layout(cfg).workdir, cfg.output_uri() if run_dir else None, log=log,
                       retry=Retry.of(cfg.data))
        with sync, run_log(layout(cfg).workdir if run_dir else None, verbose=args.verbose):
            return args.func(args, cfg, sync)
    except (ConfigError, DataError, FileNotFoundError, JudgeSetupError) as exc:
        print(f"zelo: {exc}", file=sys.stderr)
        return 2
    except (StageFailed, StorageError) as exc:
        print(f"zelo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
