"""Evaluation reranking in the driver vs in a Ray Data actor pool (`rerank.executor`), same run.

    .venv/bin/python -m benchmarks.rerank_pool --run runs/cranfield --json docs/bench/rerank_pool.json

Takes a finished run directory (`make demo` writes runs/cranfield), reranks the top-`--depth`
candidates of `--queries` queries with the run's trained model both ways, checks that both give
the same ranking, and reports pairs/s of each (after one untimed warm-up of each path). On a CPU
machine the pool is not expected to be faster than the driver's own threads: it exists so that
scoring can move to GPU actors and to other nodes; this measures what the pool costs here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/cranfield", help="a finished run directory")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args(argv)

    import pyarrow.parquet as pq

    from zelo_ray.config import load_config
    from zelo_ray.data import open_collection
    from zelo_ray.scoring.rerank import rerank_candidates
    from zelo_ray.scoring.scorer import ScorerPool

    run = Path(a.run)
    ckpt = str(run / "train" / "model")
    col = open_collection(run / "data")
    queries = sorted(set(pq.read_table(run / "candidates.parquet", columns=["query_id"])["query_id"].to_pylist()))
    queries = queries[:a.queries]
    cores = os.cpu_count() or 1
    cfg = load_config(None, [f"data.workdir={run}", "rerank.executor=ray", f"rerank.actors={a.actors}",
                             f"rerank.cpus={max(1, cores // a.actors)}", f"ray.num_cpus={cores}"])
    pairs = None
    results, tables = {}, {}
    for mode, pool in (("driver", None), ("actor pool", ScorerPool(cfg))):
        for timed in (False, True):
            t0 = time.perf_counter()
            t = rerank_candidates(col, run / "candidates.parquet", ckpt, queries, depth=a.depth,
                                  log=lambda *_: None, pool=pool)
            if timed:
                wall = time.perf_counter() - t0
                pairs = t.filter(t["score"].is_valid()).num_rows
                results[mode] = {"wall_s": round(wall, 2), "pairs": pairs, "pairs_per_s": round(pairs / wall, 1)}
                tables[mode] = t.sort_by([("query_id", "ascending"), ("rank", "ascending")])
                print(f"{mode}: {pairs} pairs in {wall:.1f} s = {pairs / wall:.1f} pairs/s", file=sys.stderr)
    same = tables["driver"]["doc_id"].equals(tables["actor pool"]["doc_id"])
    out = {"benchmark": "rerank_pool", "run": str(run), "queries": len(queries), "depth": a.depth,
           "actors": a.actors, "cpus_per_actor": max(1, cores // a.actors), "machine_cores": cores,
           "same_ranking": same, "runs": results,
           "pool_over_driver": round(results["actor pool"]["pairs_per_s"] / results["driver"]["pairs_per_s"], 3)}
    from zelo_ray.bench.commands import write_result

    write_result(out, a.json)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
