"""The arguments of every `zelo bench …` command, registered on the CLI's parser by
``add_bench_commands``; each routes to its handler in :mod:`zelo_ray.bench.commands`."""

from __future__ import annotations

from zelo_ray.bench import commands as handlers

__all__ = ["RERANK_DATASETS", "add_bench_commands"]


# zelo bench rerank's collections (kept here, not imported, so `zelo --help` loads no benchmark)
RERANK_DATASETS = ("cranfield", "cisi", "med", "cacm", "vaswani", "nfcorpus")


def add_bench_commands(sub) -> None:
    """``zelo bench <name>`` for every benchmark, on the CLI's subparsers ``sub``."""
    bench = sub.add_parser("bench", help="benchmarks (results go to docs/benchmarks.md)")
    bsub = bench.add_subparsers(dest="bench", required=True)
    for add in _BENCHMARKS:
        add(bsub)


def _args_elo(bsub) -> None:
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
    p.set_defaults(func=handlers.cmd_bench_elo)


def _args_sampling(bsub) -> None:
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
    p.set_defaults(func=handlers.cmd_bench_sampling)


def _args_retrieval(bsub) -> None:
    p = bsub.add_parser("retrieval", help="indexing and retrieval throughput on a synthetic corpus")
    p.add_argument("--docs", type=int, default=100_000, help="synthetic corpus size")
    p.add_argument("--queries", type=int, default=2000, help="queries timed per system")
    p.add_argument("--embed-sample", type=int, default=1000,
                   help="documents embedded through the Ray pipeline to measure dense indexing docs/s")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--workdir", default="runs/bench-retrieval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_retrieval)


def _args_quality(bsub) -> None:
    p = bsub.add_parser("quality", help="BM25 / dense / hybrid quality on several collections")
    p.add_argument("--datasets", nargs="+", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--workdir", default="runs/bench-quality/{dataset}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_quality)


def _args_bm25(bsub) -> None:
    p = bsub.add_parser("bm25", help="BM25 alone per analyzer (nDCG@10, Recall@100, MAP)")
    p.add_argument("--datasets", nargs="+", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_bm25)


def _args_judging(bsub) -> None:
    p = bsub.add_parser("judging", help="judge calls/s against a local server with latency L, cap C")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--latency", type=float, default=0.5, help="server latency L per request (s)")
    p.add_argument("--concurrency", type=int, default=32, help="server concurrency cap C")
    p.add_argument("--fail", type=float, default=0.2, help="share of HTTP 500s in the second run")
    p.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_judging)


def _args_kill_resume(bsub) -> None:
    p = bsub.add_parser("kill-resume", help="kill -9 a three-judge annotate run at several moments: calls paid twice")
    p.add_argument("--kill-after", type=float, nargs="+", default=[1.0, 3.0, 5.0, 7.0, 9.0],
                   help="seconds after each run's first call at which it is killed")
    p.add_argument("--modes", nargs="+", default=["caller", "driver"], choices=["caller", "driver"])
    p.add_argument("--judges", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8, help="max_concurrency of each judge")
    p.add_argument("--queries", type=int, default=60, help="Cranfield queries judged (top-20 each)")
    p.add_argument("--workdir", help="run directory of the first stage (default runs/bench-kill/cranfield)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_kill_resume)


def _args_caller_pool(bsub) -> None:
    p = bsub.add_parser("caller-pool", help="an endpoint's rate limit while the judge-caller pool grows 1 → N")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rpm", type=float, default=3000.0, help="the endpoint's requests/min (R)")
    p.add_argument("--burst", type=float, default=1.0, help="seconds of R the endpoint lets through at once")
    p.add_argument("--latency", type=float, default=0.5, help="server latency per request (s)")
    p.add_argument("--max-callers", type=int, default=4)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_caller_pool)


def _args_annotate_scale(bsub) -> None:
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
    p.set_defaults(func=handlers.cmd_bench_annotate_scale)


def _args_slm_scale(bsub) -> None:
    p = bsub.add_parser("slm-scale", help="the SLM loop's routing, two passes and report vs plain annotation "
                        "at scale (synthetic, simulated seats)")
    p.add_argument("--queries", type=int, default=112_000)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--share", type=float, default=0.25, help="annotate.slm.teacher_share")
    p.add_argument("--max-pairs", type=int, default=20_000, help="the distillation sample drawn")
    p.add_argument("--executor", default="ray", choices=["local", "ray"])
    p.add_argument("--workdir", help="where the synthetic run goes (default: a temp dir)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_slm_scale)


def _args_proof(bsub) -> None:
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
    p.set_defaults(func=handlers.cmd_bench_proof)


def _args_rerank(bsub) -> None:
    p = bsub.add_parser("rerank", help="ablation: first stage, fusion only, zELO vs binary-qrels training, "
                        "model alone vs served function, zELO-tuned embedder (per collection), and one "
                        "model pooled over every collection's training queries")
    p.add_argument("--datasets", nargs="*", default=list(RERANK_DATASETS))
    p.add_argument("--no-pooled", action="store_true", help="skip the model trained on every collection at once")
    p.add_argument("--workdir", default="runs/bench-ablation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--plot", help="also draw the deltas vs hybrid into this PNG")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_rerank)


def _args_train(bsub) -> None:
    p = bsub.add_parser("train", help="Ray Train (N CPU workers) vs a plain PyTorch loop, same model and data")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_train)


def _args_serve(bsub) -> None:
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
    p.set_defaults(func=handlers.cmd_bench_serve)


def _args_cost(bsub) -> None:
    p = bsub.add_parser("cost", help="project GPU-hours and wall time of a run from the measured rates")
    p.add_argument("--queries", type=int, default=112_000)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--gpus", type=int, default=32, help="GPUs in the cluster (wall time of GPU stages)")
    p.add_argument("--callers", type=int, default=16, help="judge-caller processes")
    p.add_argument("--endpoint-rpm", type=float, default=10_000, help="rate limit of each judge endpoint")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_cost)


def _args_labelfree(bsub) -> None:
    p = bsub.add_parser("labelfree", help="zELO graded labels vs human qrels at ranking systems")
    p.add_argument("--datasets", nargs="*", default=["cranfield", "cisi", "med", "cacm", "vaswani"])
    p.add_argument("--bundle", default="runs/proof/bundle")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_labelfree)


def _args_model_fit(bsub) -> None:
    p = bsub.add_parser("model-fit", help="held-out likelihood of Bradley-Terry vs Thurstone")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--docs", type=int, default=100)
    p.add_argument("--votes", type=int, nargs="+", default=[3, 10, 30],
                   help="Bernoulli votes per judged pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_model_fit)


def _args_overload(bsub) -> None:
    p = bsub.add_parser("overload", help="zelo serve under 10x its capacity (open loop): shed share, p99 of "
                        "the accepted vs unloaded, memory; and the same burst without admission control")
    p.add_argument("--dataset", default="cranfield", help="corpus the request texts come from")
    p.add_argument("--checkpoint", help="model folder (default: the demo's, else MiniLM + fresh head)")
    p.add_argument("--docs", type=int, default=20, help="documents per request")
    p.add_argument("--doc-bytes", type=int, default=1000)
    p.add_argument("--factor", type=float, default=10.0, help="offered load over the measured capacity")
    p.add_argument("--overload-s", type=float, default=30.0)
    p.add_argument("--timeout-s", type=float, default=30.0, help="a client's bound on one request")
    p.add_argument("--no-baseline", action="store_true", help="skip the burst without admission control")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_overload)


def _args_serve_peers(bsub) -> None:
    p = bsub.add_parser("serve-peers", help="zelo serve vs Infinity (its own venv) vs in-process "
                        "sentence-transformers: the same checkpoint and requests, alternated")
    p.add_argument("--dataset", default="nfcorpus", help="corpus the request texts come from")
    p.add_argument("--checkpoint", help="cross-encoder folder (default: the demo's, else MiniLM + fresh head)")
    p.add_argument("--requests", type=int, default=16, help="requests per system per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--systems", nargs="+", default=["zelo:onnx-int8", "infinity:optimum", "st"],
                   help="zelo:<torch|onnx|onnx-int8>, infinity:<optimum|torch>, st")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_serve_peers)


def _args_embed(bsub) -> None:
    p = bsub.add_parser("embed", help="dense indexing docs/s per backend vs in-process sentence-transformers "
                        "(same documents, token budget, threads), and the int8 index's retrieval quality")
    p.add_argument("--dataset", default="cranfield")
    p.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_embed)


def _args_backend_quality(bsub) -> None:
    p = bsub.add_parser("backend-quality", help="a finished run's reranker on each inference backend: "
                        "nDCG@10 on its test queries, paired CIs against torch and the first stage")
    p.add_argument("--workdir", default="runs/nfcorpus", help="a finished run (default: the demo's)")
    p.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_backend_quality)


def _args_adaptive(bsub) -> None:
    p = bsub.add_parser("adaptive", help="judge calls vs label quality: adaptive pair selection vs the paper's "
                        "cycles on simulated judges (every collection's BM25 candidates, graded by its qrels)")
    p.add_argument("--datasets", nargs="+", default=["cranfield", "cisi", "med", "cacm", "vaswani", "nfcorpus"])
    p.add_argument("--workdir", default="runs/bench-adaptive")
    p.add_argument("--n-docs", type=int, default=100, help="candidates per query (annotate.top_n)")
    p.add_argument("--max-queries", type=int, default=500, help="judged queries per collection (a seeded sample)")
    p.add_argument("--rounds", type=int, default=8, help="graph.rounds of the adaptive runs")
    p.add_argument("--top", type=int, default=20, help="graph.top of the adaptive runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="also draw the budget curves into this PNG")
    p.add_argument("--compare-runs", nargs=2, metavar=("CANDIDATE", "BASELINE"),
                   help="instead: the end-to-end check, two finished runs' test nDCG@10 with paired CIs "
                        "(e.g. runs/nfcorpus-adaptive runs/nfcorpus)")
    p.add_argument("--json", help="also write the JSON result here")
    p.set_defaults(func=handlers.cmd_bench_adaptive)


_BENCHMARKS = (_args_elo, _args_sampling, _args_retrieval, _args_quality, _args_bm25, _args_judging,
               _args_kill_resume, _args_caller_pool, _args_annotate_scale, _args_slm_scale, _args_proof,
               _args_rerank, _args_train, _args_serve, _args_cost, _args_labelfree, _args_model_fit,
               _args_overload, _args_serve_peers, _args_embed,
               _args_backend_quality, _args_adaptive)
