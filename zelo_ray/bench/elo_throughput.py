"""Benchmark 1: Elo fit throughput at the paper's scale, against choix in the same run.

112,000 queries × n = 100 × k = 8 (400 pairs each, 44.8M edges), simulated 3-judge outcomes,
fitted chunk by chunk (as the streaming Elo stage does) so memory stays bounded. Only the fit
calls are timed; data generation is reported separately.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from zelo_ray.bench.common import machine, peak_rss_mb
from zelo_ray.core.elo import fit
from zelo_ray.core.ensemble import clamp_votes, soft_outcomes
from zelo_ray.core.simulate import LABEL, simulate_queries


@dataclass
class EloThroughput:
    label: str
    model: str
    queries: int
    edges: int
    fit_seconds: float
    queries_per_s: float
    generate_seconds: float
    mean_iterations: float
    not_converged: int
    stderr: bool
    threads: int
    peak_rss_mb: float
    choix_ms_per_query: float
    ours_ms_per_query_single_call: float
    ours_ms_per_query_batched: float
    speedup_vs_choix_batched: float
    speedup_vs_choix_single_call: float
    machine: str


def run(
    n_queries: int = 112_000,
    n_docs: int = 100,
    k: int = 8,
    model: str = "thurstone",
    chunk: int = 8192,
    choix_sample: int = 100,
    stderr: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> EloThroughput:
    import numba

    rng = np.random.default_rng(seed)
    # Compile outside the timed region (the cache makes later processes skip this).
    warm = simulate_queries(2, n_docs, rng, k=k, graph_pool=2)
    fit(warm.i, warm.j, soft_outcomes(warm.votes).w, 2 * n_docs, group=warm.group, model=model)
    t = _timed_fits(rng, n_queries, n_docs, k, model, chunk, stderr, progress)
    choix_ms, single_ms, batched_ms = _compare_choix(t["sample"][0], t["sample"][1], n_docs, model,
                                                     min(choix_sample, chunk), stderr)
    return EloThroughput(
        label=LABEL,
        model=model,
        queries=n_queries,
        edges=t["edges"],
        fit_seconds=t["fit_s"],
        queries_per_s=n_queries / t["fit_s"],
        generate_seconds=t["gen_s"],
        mean_iterations=float(np.concatenate(t["iters"]).mean()),
        not_converged=t["not_converged"],
        stderr=stderr,
        threads=numba.get_num_threads(),
        peak_rss_mb=peak_rss_mb(),
        choix_ms_per_query=choix_ms,
        ours_ms_per_query_single_call=single_ms,
        ours_ms_per_query_batched=batched_ms,
        speedup_vs_choix_batched=choix_ms / batched_ms,
        speedup_vs_choix_single_call=choix_ms / single_ms,
        machine=machine(),
    )


def _timed_fits(rng, n_queries: int, n_docs: int, k: int, model: str, chunk: int, stderr: bool,
                progress: bool) -> dict:
    """Simulate and fit ``chunk`` queries at a time; generation and fitting timed apart."""
    t = {"fit_s": 0.0, "gen_s": 0.0, "iters": [], "not_converged": 0, "edges": 0, "sample": None}
    done = 0
    bar = tqdm(total=n_queries, desc=f"elo {model}", unit="q", disable=not progress)
    while done < n_queries:
        q = min(chunk, n_queries - done)
        t0 = time.perf_counter()
        batch = simulate_queries(q, n_docs, rng, k=k, graph_pool=256)
        w = soft_outcomes(batch.votes).w
        t1 = time.perf_counter()
        res = fit(batch.i, batch.j, w, q * n_docs, group=batch.group, model=model, stderr=stderr)
        t["gen_s"] += t1 - t0
        t["fit_s"] += time.perf_counter() - t1
        t["iters"].append(res.iterations)
        t["not_converged"] += int((~res.converged).sum())
        t["edges"] += len(w)
        if t["sample"] is None:
            t["sample"] = (batch, w)
        done += q
        bar.update(q)
    bar.close()
    return t


def _compare_choix(batch, w, n_docs, model, n_sample, stderr):
    """Per-query time of choix.ilsr_pairwise vs ours, on the same first n_sample queries."""
    import choix

    per_query = len(w) // (len(batch.group) // n_docs)
    votes = clamp_votes(batch.votes)
    choix_data = []
    for q in range(n_sample):
        sl = slice(q * per_query, (q + 1) * per_query)
        a = batch.i[sl] - q * n_docs
        b = batch.j[sl] - q * n_docs
        data = []
        # Each vote becomes two comparisons (a tie one each way), so the comparison counts
        # carry the same soft outcome w as our fit sees.
        for p in range(votes.shape[1]):
            v = votes[sl, p]
            for aa, bb, vv in zip(a.tolist(), b.tolist(), v.tolist()):
                if vv < 0:
                    data += [(aa, bb), (aa, bb)]
                elif vv > 0:
                    data += [(bb, aa), (bb, aa)]
                else:
                    data += [(aa, bb), (bb, aa)]
        choix_data.append(data)
    t0 = time.perf_counter()
    for data in choix_data:
        choix.ilsr_pairwise(n_docs, data, alpha=0.01)
    choix_ms = (time.perf_counter() - t0) / n_sample * 1e3

    t0 = time.perf_counter()
    for q in range(n_sample):
        sl = slice(q * per_query, (q + 1) * per_query)
        fit(batch.i[sl] - q * n_docs, batch.j[sl] - q * n_docs, w[sl], n_docs, model=model,
            stderr=stderr)
    single_ms = (time.perf_counter() - t0) / n_sample * 1e3

    e = n_sample * per_query
    t0 = time.perf_counter()
    fit(batch.i[:e], batch.j[:e], w[:e], n_sample * n_docs,
        group=batch.group[: n_sample * n_docs], model=model, stderr=stderr)
    batched_ms = (time.perf_counter() - t0) / n_sample * 1e3
    return choix_ms, single_ms, batched_ms


def as_dict(r: EloThroughput) -> dict:
    return asdict(r)
