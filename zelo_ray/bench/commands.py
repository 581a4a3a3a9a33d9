"""What each `zelo bench …` command runs (results go to docs/benchmarks.md); their arguments are
:mod:`zelo_ray.bench.arguments`'s. Kept apart from the CLI so `zelo --help` loads no benchmark."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["write_result"]


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


def cmd_bench_overload(args: argparse.Namespace) -> int:
    from zelo_ray.bench import overload

    r = overload.run(dataset=args.dataset, checkpoint=args.checkpoint, docs=args.docs, doc_bytes=args.doc_bytes,
                     factor=args.factor, overload_s=args.overload_s, timeout_s=args.timeout_s,
                     baseline=not args.no_baseline, log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "overload", **r}, args.json)
    return 0 if all(r["checks"].values()) else 1


def cmd_bench_serve_peers(args: argparse.Namespace) -> int:
    from zelo_ray.bench import serve_peers

    r = serve_peers.run(dataset=args.dataset, checkpoint=args.checkpoint, requests=args.requests,
                        rounds=args.rounds, clients=args.clients, systems=tuple(args.systems),
                        log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "serve_peers", **r}, args.json)
    return 0


def cmd_bench_adaptive(args: argparse.Namespace) -> int:
    from zelo_ray.bench import adaptive

    if args.compare_runs:
        write_result({"benchmark": "adaptive_end_to_end", **adaptive.compare_runs(*args.compare_runs)}, args.json)
        return 0
    r = adaptive.run(args.datasets, workdir=args.workdir, n_docs=args.n_docs, max_queries=args.max_queries,
                     rounds=args.rounds, top=args.top, seed=args.seed, log=lambda m: print(m, file=sys.stderr))
    if args.plot:
        adaptive.plot(r, args.plot)
    print(adaptive.markdown(r), file=sys.stderr)
    write_result({"benchmark": "adaptive", **r}, args.json)
    return 0


def cmd_bench_embed(args: argparse.Namespace) -> int:
    from zelo_ray.bench import embedding

    r = embedding.run(dataset=args.dataset, backends=tuple(args.backends), rounds=args.rounds,
                      log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "embed", **r}, args.json)
    return 0


def cmd_bench_backend_quality(args: argparse.Namespace) -> int:
    from zelo_ray.bench import backend_quality

    r = backend_quality.run(workdir=args.workdir, backends=tuple(args.backends),
                            log=lambda m: print(m, file=sys.stderr))
    write_result({"benchmark": "backend_quality", **r}, args.json)
    return 0
