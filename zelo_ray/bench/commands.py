"""The `zelo bench …` commands (results go to docs/benchmarks.md): their arguments and what
each runs. Registered on the CLI's parser by ``add_bench_commands``; kept apart so the CLI of
the pipeline stays small."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_bench_commands", "write_result"]


def write_result(result: dict, path: str | None) -> None:
    """Print a JSON result and, with ``path``, also write it there."""
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def cmd_bench_proof(args: argparse.Namespace) -> int:
    from zelo_ray.bench import proof

    if args.phase == "prepare":
        r = proof.prepare(args.datasets, bundle=args.bundle, depth=args.depth,
                          candidates_per_query=args.candidates_per_query)
    elif args.phase == "train":
        r = proof.train(args.bundle, base=args.base, scores=args.scores, device=args.device, epochs=args.epochs,
                        batch_size=args.batch_size, max_length=args.max_length, lr=args.lr, precision=args.precision,
                        datasets=args.datasets or None, kind=args.kind)
    else:
        r = proof.evaluate(args.datasets, scores=args.scores, bundle=args.bundle)
    write_result({"benchmark": f"proof_{args.phase}", **r}, args.json)
    return 0


def cmd_bench_rerank(args: argparse.Namespace) -> int:
    from zelo_ray.bench import ablation

    r = ablation.run(args.datasets, workdir=args.workdir, overrides=args.set, pool=not args.no_pooled,
                     log=lambda m: print(m, file=sys.stderr))
    if args.plot:
        ablation.plot(r, args.plot)
    write_result(r, args.json)
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from zelo_ray.bench import train_throughput

    write_result(train_throughput.run(steps=args.steps, workers=args.workers, max_length=args.max_length), args.json)
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    from zelo_ray.bench import serving

    r = serving.run(dataset=args.dataset, checkpoint=args.checkpoint, calls_12kb=args.calls_12kb,
                    calls_150kb=args.calls_150kb, clients=args.clients, throughput_requests=args.throughput_requests,
                    docs_per_request=args.docs_per_request, doc_bytes=args.doc_bytes, load_requests=args.load_requests,
                    parts=tuple(args.parts.split(",")), log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "serve", **r}, args.json)
    return 0


def cmd_bench_kill_resume(args: argparse.Namespace) -> int:
    from zelo_ray.bench import kill_resume

    r = kill_resume.run(kill_after=args.kill_after, modes=args.modes, judges=args.judges,
                        concurrency=args.concurrency, queries=args.queries, workdir=args.workdir,
                        log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "kill_resume", **r}, args.json)
    return 0


def cmd_bench_caller_pool(args: argparse.Namespace) -> int:
    from zelo_ray.bench import caller_pool

    r = caller_pool.run(calls=args.calls, rpm=args.rpm, burst_s=args.burst, latency=args.latency,
                        max_callers=args.max_callers, log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "caller_pool", **r}, args.json)
    return 0


def cmd_bench_cost(args: argparse.Namespace) -> int:
    from zelo_ray.bench import cost

    r = cost.project(queries=args.queries, candidates=args.candidates, gpus=args.gpus, callers=args.callers,
                     endpoint_rpm=args.endpoint_rpm, epochs=args.epochs)
    write_result({"benchmark": "cost_model", **r}, args.json)
    if not args.json:
        print(json.dumps(r, indent=2))
    return 0


def cmd_bench_labelfree(args: argparse.Namespace) -> int:
    from zelo_ray.bench import labelfree

    write_result({"benchmark": "labelfree", **labelfree.run(args.datasets, bundle=args.bundle)}, args.json)
    return 0


def cmd_bench_retrieval(args: argparse.Namespace) -> int:
    from zelo_ray.bench import retrieval

    r = retrieval.run(n_docs=args.docs, n_queries=args.queries, workdir=args.workdir,
                      embed_sample=args.embed_sample, k=args.k, seed=args.seed)
    write_result({"benchmark": "retrieval_throughput", **r}, args.json)
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    from zelo_ray.bench import retrieval

    r = retrieval.quality(args.datasets, workdir=args.workdir, overrides=args.overrides)
    write_result({"benchmark": "retrieval_quality", **r}, args.json)
    return 0


def cmd_bench_bm25(args: argparse.Namespace) -> int:
    from zelo_ray.bench import retrieval

    write_result({"benchmark": "bm25_variants", **retrieval.bm25_variants(args.datasets)}, args.json)
    return 0


def cmd_bench_judging(args: argparse.Namespace) -> int:
    from zelo_ray.bench import judging

    r = judging.throughput(calls=args.calls, latency=args.latency, concurrency=args.concurrency,
                           fail=args.fail, executors=tuple(args.executors))
    write_result(r, args.json)
    return 0


def cmd_bench_annotate_scale(args: argparse.Namespace) -> int:
    from zelo_ray.bench import judging

    r = judging.scale(queries=args.queries, docs=args.docs, judges=args.judges, executor=args.executor,
                      workdir=args.workdir, bucket_queries=args.bucket_queries, overrides=args.overrides)
    write_result(r, args.json)
    return 0


def cmd_bench_slm_scale(args: argparse.Namespace) -> int:
    from zelo_ray.bench import slm_scale

    write_result(slm_scale.run(queries=args.queries, docs=args.docs, share=args.share, max_pairs=args.max_pairs,
                               executor=args.executor, workdir=args.workdir), args.json)
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
    write_result({"benchmark": "elo_throughput", "results": results}, args.json)
    return 0


def cmd_bench_sampling(args: argparse.Namespace) -> int:
    from zelo_ray.bench import sampling

    r = sampling.run(n_queries=args.queries, n_docs=args.docs, budgets=tuple(args.budgets),
                     model=args.model, clamp=not args.soft, seed=args.seed,
                     progress=not args.quiet)
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        sampling.plot(r, args.plot)
    write_result({"benchmark": "sampling_fidelity", **r}, args.json)
    return 0


def cmd_bench_model_fit(args: argparse.Namespace) -> int:
    from zelo_ray.bench import model_fit

    r = model_fit.run(n_queries=args.queries, n_docs=args.docs, votes=tuple(args.votes),
                      seed=args.seed)
    write_result({"benchmark": "model_fit", **r}, args.json)
    return 0


# zelo bench rerank's collections (kept here, not imported, so `zelo --help` loads no benchmark)
RERANK_DATASETS = ("cranfield", "cisi", "med", "cacm", "vaswani", "nfcorpus")


def add_bench_commands(sub) -> None:
    """``zelo bench <name>`` for every benchmark, on the CLI's subparsers ``sub``."""
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

    p = bsub.add_parser("kill-resume", help="kill -9 a three-judge annotate run at several moments: calls paid twice")
    p.add_argument("--kill-after", type=float, nargs="+", default=[1.0, 3.0, 5.0, 7.0, 9.0],
                   help="seconds after each run's first call at which it is killed")
    p.add_argument("--modes", nargs="+", default=["caller", "driver"], choices=["caller", "driver"])
    p.add_argument("--judges", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8, help="max_concurrency of each judge")
    p.add_argument("--queries", type=int, default=60, help="Cranfield queries judged (top-20 each)")
    p.add_argument("--workdir", help="run directory of the first stage (default runs/bench-kill/cranfield)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_kill_resume)

    p = bsub.add_parser("caller-pool", help="an endpoint's rate limit while the judge-caller pool grows 1 → N")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rpm", type=float, default=3000.0, help="the endpoint's requests/min (R)")
    p.add_argument("--burst", type=float, default=1.0, help="seconds of R the endpoint lets through at once")
    p.add_argument("--latency", type=float, default=0.5, help="server latency per request (s)")
    p.add_argument("--max-callers", type=int, default=4)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_caller_pool)

    p = bsub.add_parser("annotate-scale", help="pairs → simulated votes → Elo at scale (synthetic)")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--judges", type=int, default=1, help="simulated judges (1: 4M votes at the defaults)")
    p.add_argument("--executor", default="local", choices=["local", "ray"])
    p.add_argument("--workdir", help="where the synthetic run goes (default: a temp dir; the same dir "
                   "again measures a re-run with nothing left to ask)")
    p.add_argument("--bucket-queries", type=int, help="sets annotate.bucket_queries")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (e.g. elo.prior=0.02: a re-run that must refit)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_annotate_scale)

    p = bsub.add_parser("slm-scale", help="the SLM loop's routing, two passes and report vs plain annotation "
                        "at scale (synthetic, simulated seats)")
    p.add_argument("--queries", type=int, default=112_000)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--share", type=float, default=0.25, help="annotate.slm.teacher_share")
    p.add_argument("--max-pairs", type=int, default=20_000, help="the distillation sample drawn")
    p.add_argument("--executor", default="ray", choices=["local", "ray"])
    p.add_argument("--workdir", help="where the synthetic run goes (default: a temp dir)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_slm_scale)

    p = bsub.add_parser("proof", help="zELO-trained reranker vs hybrid vs binary-qrels baseline (3 phases)")
    p.add_argument("phase", choices=["prepare", "train", "evaluate"])
    p.add_argument("--datasets", nargs="*", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--bundle", default="runs/proof/bundle")
    p.add_argument("--scores", default="runs/proof/scores")
    p.add_argument("--depth", type=int, default=100, help="prepare: test candidates reranked per query")
    p.add_argument("--candidates-per-query", type=int, help="prepare: train on each query's top-N only")
    p.add_argument("--base", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--kind", default="auto", choices=["auto", "cross_encoder", "bi_encoder", "decoder_yes"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_proof)
    p = bsub.add_parser("rerank", help="ablation: first stage, fusion only, zELO vs binary-qrels training, "
                        "model alone vs served function, zELO-tuned embedder (per collection), and one "
                        "model pooled over every collection's training queries")
    p.add_argument("--datasets", nargs="*", default=list(RERANK_DATASETS))
    p.add_argument("--no-pooled", action="store_true", help="skip the model trained on every collection at once")
    p.add_argument("--workdir", default="runs/bench-ablation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--plot", help="also draw the deltas vs hybrid into this PNG")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_rerank)
    p = bsub.add_parser("train", help="Ray Train (N CPU workers) vs a plain PyTorch loop, same model and data")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_train)
    p = bsub.add_parser("serve", help="Ray Serve: latency (12/150 KB) vs in-process, batching on/off, load test")
    p.add_argument("--dataset", default="cranfield", help="corpus the request texts come from")
    p.add_argument("--checkpoint", help="model folder (default: the demo's, else MiniLM + fresh head)")
    p.add_argument("--calls-12kb", type=int, default=30)
    p.add_argument("--calls-150kb", type=int, default=8)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--throughput-requests", type=int, default=320)
    p.add_argument("--docs-per-request", type=int, default=4)
    p.add_argument("--doc-bytes", type=int, default=300)
    p.add_argument("--load-requests", type=int, default=1000)
    p.add_argument("--parts", default="latency,throughput,load", help="comma-separated subset to run")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_serve)
    p = bsub.add_parser("cost", help="project GPU-hours and wall time of a run from the measured rates")
    p.add_argument("--queries", type=int, default=112_000)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--gpus", type=int, default=32, help="GPUs in the cluster (wall time of GPU stages)")
    p.add_argument("--callers", type=int, default=16, help="judge-caller processes")
    p.add_argument("--endpoint-rpm", type=float, default=10_000, help="rate limit of each judge endpoint")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_cost)
    p = bsub.add_parser("labelfree", help="zELO graded labels vs human qrels at ranking systems")
    p.add_argument("--datasets", nargs="*", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--bundle", default="runs/proof/bundle")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_labelfree)
    p = bsub.add_parser("model-fit", help="held-out likelihood of Bradley-Terry vs Thurstone")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--votes", type=int, nargs="+", default=[3, 10, 30],
                   help="Bernoulli votes per judged pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=cmd_bench_model_fit)
