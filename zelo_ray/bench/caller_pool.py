"""`zelo bench caller-pool`: does an endpoint's rate limit hold while the caller pool grows?

One hosted judge whose endpoint (the local fault-injecting server) allows R requests/min with a
1 s burst, as providers enforce per-minute limits; the caller pool autoscales from 1 to 4 actors
(``annotate.callers=1``, ``annotate.max_callers=4``). Two ways of holding the limit run in the
same benchmark:

* ``shared`` (what annotate does): one limit book in a Ray actor, every caller takes its slots
  from it;
* ``per-caller`` (the baseline: the behaviour before it, where a pool that started with one caller
  gave that caller the whole limit, and so does every caller the pool adds).

Per mode: requests the endpoint saw, their rate in the busiest 10 s window and in the steady part
of the run against R, the share answered 429, and how many callers the pool grew to.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run"]

WINDOW_S = 10.0


def _one(mode: str, *, calls: int, rpm: float, burst_s: float, latency: float, max_callers: int, log) -> dict:
    import zelo_ray.judges.shared_limits as shared
    from zelo_ray.annotate.execute import Progress, execute
    from zelo_ray.bench.judging import _synthetic_tasks
    from zelo_ray.config import OpenAIJudgeConfig, load_config
    from zelo_ray.judges.fake_server import FakeJudgeServer
    from zelo_ray.judges.store import VoteStore
    from zelo_ray.raysession import ensure_ray

    lines: list[str] = []
    start_limits = shared.start_limits
    if mode == "per-caller":
        shared.start_limits = lambda judges, **kw: None
    try:
        with FakeJudgeServer(latency_s=latency, requests_per_minute=rpm, burst_s=burst_s) as server, \
                tempfile.TemporaryDirectory() as tmp:
            judge = OpenAIJudgeConfig(name="bench", model="fake", base_url=server.base_url, max_concurrency=256,
                                      requests_per_minute=rpm, timeout_s=30, max_retries=20, backoff_s=0.2,
                                      backoff_max_s=5.0)
            cfg = load_config(None, ["annotate.executor=ray", "annotate.callers=1",
                                     f"annotate.max_callers={max_callers}", "annotate.batch_size=32",
                                     "annotate.batches_in_flight=2", "annotate.answer_log=caller", "ray.num_cpus=2"])
            cfg.annotate.judges = [judge]
            tasks, texts = _synthetic_tasks(calls, "bench")
            store = VoteStore(Path(tmp) / "votes")
            ensure_ray(cfg.ray)
            progress = Progress(calls, log_fn=lines.append, every_s=1e9, first_s=1e9)
            t0 = time.perf_counter()
            execute(tasks, cfg, store, texts, progress)
            wall = time.perf_counter() - t0
            store.organize()
            votes = store.read()
            arrivals = np.sort(np.asarray(server.arrivals))
            outcomes = dict(server.outcomes)
    finally:
        shared.start_limits = start_limits
    rate = rpm / 60.0
    ends = np.searchsorted(arrivals, arrivals + WINDOW_S, side="right")
    busiest = int((ends - np.arange(len(arrivals))).max())
    steady = float((len(arrivals) - rate * burst_s) / max(arrivals[-1] - arrivals[0], 1e-9))
    used = next((int(line.split("judge callers: ")[1].split(" used")[0]) for line in lines
                 if "judge callers: " in line), None)
    answered = votes.num_rows - votes["score"].null_count
    row = {"mode": mode, "calls": calls, "answered": int(answered), "wall_s": round(wall, 1),
           "requests": int(len(arrivals)), "http_429": int(outcomes.get("429_rate", 0)),
           "http_429_share": round(outcomes.get("429_rate", 0) / max(len(arrivals), 1), 4),
           "busiest_10s_requests": busiest, "allowed_10s_requests": round(rate * (WINDOW_S + burst_s), 1),
           "busiest_10s_over_R": round(busiest / (rate * (WINDOW_S + burst_s)), 3),
           "steady_rate_per_s": round(steady, 2), "steady_over_R": round(steady / rate, 3),
           "callers_used": used}
    grew = f"pool grew to {used} callers" if used is not None else "no book to count the callers"
    log(f"{mode:10s}: {row['requests']} requests for {calls} calls ({answered} answered) in {wall:.0f} s; "
        f"429s {row['http_429_share']:.2%}; busiest 10 s {busiest} requests = {row['busiest_10s_over_R']:.2f}× "
        f"what R allows; steady {steady:.1f}/s = {row['steady_over_R']:.2f}× R; {grew}")
    return row


def run(*, calls: int = 3000, rpm: float = 3000.0, burst_s: float = 1.0, latency: float = 0.5,
        max_callers: int = 4, log=print) -> dict:
    import ray

    runs = []
    for mode in ("shared", "per-caller"):
        runs.append(_one(mode, calls=calls, rpm=rpm, burst_s=burst_s, latency=latency,
                         max_callers=max_callers, log=log))
        ray.shutdown()  # each mode starts its own pool from one caller
    return {"rpm": rpm, "burst_s": burst_s, "latency_s": latency, "max_callers": max_callers,
            "window_s": WINDOW_S, "runs": runs}
