"""`zelo bench kill-resume`: what a `kill -9` costs. Three judges on a fault-injecting local
endpoint judge a real collection's candidates; the whole `zelo annotate` process group is killed
at several moments, each time re-run, and finally run to the end. Per kill: how many calls the
endpoint had already answered were asked (paid for) again, against the calls that could have
been in flight (the judges' summed ``max_concurrency``). Both ways of storing answers run in the
same benchmark: callers logging each answer (``annotate.answer_log=caller``) and the driver
storing returned batches (``driver``, the previous behaviour)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

__all__ = ["run"]


def _answered(votes_dir: Path) -> int:
    from zelo_ray.judges.store import VoteStore

    return len(VoteStore(votes_dir).answered_keys()) if votes_dir.exists() else 0


def _settle(votes_dir: Path, timeout_s: float = 60.0) -> None:
    """Wait until the store stops growing: Ray's workers outlive a killed driver for a moment."""
    counts, t0 = [], time.monotonic()
    while (len(counts) < 4 or len(set(counts[-4:])) > 1) and time.monotonic() - t0 < timeout_s:
        counts.append(_answered(votes_dir))
        time.sleep(0.5)


def _one_mode(mode: str, run_dir: Path, kill_after: list[float], *, judges: int, concurrency: int,
              top_n: int, queries: int, latency: float, log) -> dict:
    from zelo_ray.judges.fake_server import FakeJudgeServer, Faults
    from zelo_ray.judges.store import VoteStore

    out = Path(tempfile.mkdtemp(prefix=f"kill-{mode}-"))
    with FakeJudgeServer(latency_s=latency, faults=Faults(http_500=0.03, http_429=0.01),
                         retry_after_s=0.05) as server:
        conf = {"data": {"dataset": "cranfield", "workdir": str(run_dir)}, "ray": {"num_cpus": 2},
                "annotate": {"top_n": top_n, "max_queries": queries, "executor": "ray", "callers": 1,
                             "batch_size": 64, "batches_in_flight": 4, "answer_log": mode, "output": str(out),
                             "judges": [{"name": f"j{i}", "model": f"fake-{i}", "base_url": server.base_url,
                                         "max_concurrency": concurrency, "max_retries": 8, "backoff_s": 0.05,
                                         "backoff_max_s": 0.5} for i in range(judges)]}}
        path = out / "annotate.yaml"
        path.write_text(yaml.safe_dump(conf))
        cmd = [sys.executable, "-m", "zelo_ray.cli", "annotate", "--config", str(path)]
        env = dict(os.environ, RAY_TMPDIR=str(out / "ray"))
        kills = []
        for moment in kill_after:
            before = {int(k) for k in server.answered}
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            start = server.total
            while server.total == start:         # count from the first request of this run
                if proc.poll() is not None:
                    raise RuntimeError(f"{mode}: the run ended before its first call")
                time.sleep(0.05)
            time.sleep(moment)
            if proc.poll() is not None:
                log(f"{mode}: the run finished before the kill at {moment}s; stopping the kills here")
                break
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            _settle(out / "votes")
            answered_by_endpoint = {int(k) for k in server.answered} - before
            stored = set(VoteStore(out / "votes").answered_keys().tolist())
            kills.append({"after_s": moment, "answered_by_endpoint": len(answered_by_endpoint),
                          "stored": len(stored), "_lost": answered_by_endpoint - stored})
            log(f"{mode}: killed {moment}s into a run; {len(answered_by_endpoint)} answered by the endpoint, "
                f"{len(answered_by_endpoint - stored)} of them not stored")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode:
            raise RuntimeError(f"{mode}: the final run failed:\n{done.stderr[-3000:]}")
        final = VoteStore(out / "votes").read()
        report = json.loads((out / "report.json").read_text())
        answered_twice = sum(1 for v in server.answered.values() if v > 1)
    repaid_total = 0
    for k in kills:
        # a lost answer is paid again by a later run (the one after this kill, or the final one)
        k["repaid"] = len(k.pop("_lost"))
        repaid_total += k["repaid"]
    return {"mode": mode, "kills": kills, "judge_calls": report["judge_calls"],
            "stored_answers": int(final["score"].is_valid().to_numpy(zero_copy_only=False).sum()),
            "missing_votes": report["missing_votes"], "repaid_total": repaid_total,
            "answered_twice_by_endpoint": answered_twice,
            "in_flight_bound": judges * concurrency,
            "max_repaid_per_kill": max((k["repaid"] for k in kills), default=0)}


def run(*, kill_after: list[float] = (1.0, 3.0, 5.0, 7.0, 9.0), modes=("caller", "driver"), judges: int = 3,
        concurrency: int = 8, top_n: int = 20, queries: int = 60, latency: float = 0.05, workdir: str | None = None,
        log=print) -> dict:
    """``kill_after``: seconds after each run's first call at which it is killed."""
    from zelo_ray.bench.common import machine
    from zelo_ray.config import load_config
    from zelo_ray.workflows.first_stage import run_first_stage

    run_dir = Path(workdir or "runs/bench-kill/cranfield")
    cfg = load_config(None, ["data.dataset=cranfield", f"data.workdir={run_dir}", "ray.num_cpus=2"])
    log("first stage (index + retrieve; reused when present)")
    run_first_stage(cfg)
    results = [_one_mode(m, run_dir, list(kill_after), judges=judges, concurrency=concurrency, top_n=top_n,
                         queries=queries, latency=latency, log=log) for m in modes]
    return {"machine": machine(), "kill_after_s": list(kill_after), "judges": judges,
            "max_concurrency_per_judge": concurrency, "server_latency_s": latency,
            "faults": {"http_500": 0.03, "http_429": 0.01}, "modes": results}
