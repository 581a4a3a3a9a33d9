"""`zelo bench overload`: `zelo serve` under a burst it cannot serve (issue #31).

One Ray Serve instance on this machine, the served settings a user gets by default, TEI-shaped
requests of ``docs`` documents of ``doc_bytes`` bytes (the demo's checkpoint by default):

1. **unloaded**: ``unloaded`` requests one after another → p50/p99 of a lone request;
2. **capacity**: ``capacity_clients`` closed-loop clients for ``capacity_s`` → answered requests/s;
3. **overload**: an *open-loop* arrival process (requests sent on a fixed schedule whatever the
   answers, as independent users do) at ``factor`` × capacity for ``overload_s``; each request
   waits at most ``timeout_s`` (the stated bound). Every status is counted, the accepted
   requests' latency percentiles are compared with the unloaded p99, the replica's RSS is read
   from ``/healthz`` before, during and after, and one request after the burst checks health;
4. **baseline** (unless ``baseline=False``): the same burst against the same model with
   admission control off (``max_pending_tokens`` huge, the proxy queue unbounded) — what
   `zelo serve` did before.

Targets: every request answered with 200 or the overload status (no other 5xx, no timeout),
p99 of the accepted ≤ 3 × the unloaded p99, memory flat, healthy afterwards.
"""

from __future__ import annotations

import asyncio
import time

from zelo_ray.bench.common import free_port, machine
from zelo_ray.bench.payloads import make_docs, percentiles
from zelo_ray.bench.serving import bench_checkpoint, corpus_texts, deploy

__all__ = ["run"]


def run(*, dataset: str = "cranfield", checkpoint: str | None = None, docs: int = 20, doc_bytes: int = 1000,
        unloaded: int = 20, capacity_clients: int = 2, capacity_s: float = 20.0, factor: float = 10.0,
        overload_s: float = 30.0, timeout_s: float = 30.0, threads: int = 2, baseline: bool = True,
        log=print) -> dict:
    import ray
    from ray import serve

    texts = corpus_texts(dataset)
    ckpt, label = bench_checkpoint(checkpoint)
    bodies = [{"query": " ".join(texts[i].split()[:8]), "texts": make_docs(texts, docs, doc_bytes, seed=i)}
              for i in range(200)]
    out = {"machine": machine(), "checkpoint": label, "threads": threads, "request": f"TEI /rerank, {docs} "
           f"documents of {doc_bytes} bytes", "timeout_s": timeout_s, "factor": factor}
    port = free_port()
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        base = f"http://127.0.0.1:{port}"
        deploy(ckpt, port, num_cpus=threads)
        out["settings"] = _get(f"{base}/healthz")
        out["unloaded"] = asyncio.run(_closed_loop(f"{base}/rerank", bodies[:unloaded], 1, timeout_s))["accepted"]
        log(f"unloaded: {out['unloaded']}")
        out["capacity"] = asyncio.run(_closed_loop(f"{base}/rerank", bodies, capacity_clients, timeout_s,
                                                   duration_s=capacity_s))
        rate = factor * out["capacity"]["answered_per_s"]
        log(f"capacity: {out['capacity']['answered_per_s']} requests/s; offering {rate:.2f}/s for {overload_s:g} s")
        out["admission"] = _burst(base, bodies, rate, overload_s, timeout_s, out["unloaded"], log)
        if baseline:
            deploy(ckpt, port, num_cpus=threads, max_pending_tokens=1 << 30, max_queued_requests=-1)
            out["no_admission"] = _burst(base, bodies, rate, overload_s, timeout_s, out["unloaded"], log)
    finally:
        serve.shutdown()
        ray.shutdown()
    out["checks"] = passed(out)
    return out


def _get(url: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _burst(base: str, bodies: list[dict], rate: float, duration_s: float, timeout_s: float, unloaded: dict,
           log) -> dict:
    """The open-loop burst, the replica's memory around it and a health check after it."""
    before = _get(f"{base}/healthz")["rss_mb"]
    result = asyncio.run(_open_loop(f"{base}/rerank", f"{base}/healthz", bodies, rate, duration_s, timeout_s))
    after = _get(f"{base}/healthz")
    lone = asyncio.run(_closed_loop(f"{base}/rerank", bodies[:3], 1, timeout_s))
    acc = result["accepted"]
    samples = result.pop("rss_samples")
    result.update(rss_mb={"before": before, "peak_during": max(samples, default=None), "after": after["rss_mb"],
                          "every_2s": samples},
                  healthy_after=after["status"] == "ok" and lone["codes"] == {"200": 3},
                  p99_accepted_over_unloaded=round(acc["p99_ms"] / unloaded["p99_ms"], 2) if acc else None)
    log(f"burst: {result}")
    return result


async def _closed_loop(url: str, bodies: list[dict], clients: int, timeout_s: float, *,
                       duration_s: float | None = None) -> dict:
    """``clients`` clients sending one request after another (each body once, or cycling for
    ``duration_s``); a shed request is sent again at once (what counts is answers/s)."""
    import aiohttp

    lat, codes, i = [], {}, 0
    t0 = time.perf_counter()

    def more() -> bool:
        return (time.perf_counter() - t0 < duration_s) if duration_s else i < len(bodies)

    async def client(session):
        nonlocal i
        while more():
            body, i = bodies[i % len(bodies)], i + 1
            code, seconds = await _post(session, url, body)
            codes[str(code)] = codes.get(str(code), 0) + 1
            if code == 200:
                lat.append(seconds)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
        await asyncio.gather(*(client(s) for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"codes": codes, "answered_per_s": round(len(lat) / wall, 3),
            "accepted": percentiles(lat) if lat else None}


async def _open_loop(url: str, health: str, bodies: list[dict], rate: float, duration_s: float,
                     timeout_s: float) -> dict:
    """Requests sent every 1/``rate`` s for ``duration_s`` whatever the answers; statuses,
    latencies (accepted and shed apart) and the replica's RSS every 2 s."""
    import aiohttp

    results, rss = [], []

    async def one(session, body):
        results.append(await _post(session, url, body))

    async def watch(session):
        while True:
            try:
                async with session.get(health) as r:
                    rss.append((await r.json())["rss_mb"])
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError):
                pass
            await asyncio.sleep(2.0)

    n = int(rate * duration_s)
    conn = aiohttp.TCPConnector(limit=0)  # no client-side queue: every request goes out on time
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s), connector=conn) as s:
        watcher = asyncio.create_task(watch(s))
        t0 = time.perf_counter()
        tasks = []
        for k in range(n):
            await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(s, bodies[k % len(bodies)])))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        watcher.cancel()
    return _summary(results, n, rate, duration_s, wall, rss)


def _summary(results: list[tuple[int, float]], n: int, rate: float, duration_s: float, wall: float,
             rss: list[float]) -> dict:
    codes: dict[str, int] = {}
    for code, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    accepted = [t for c, t in results if c == 200]
    shed = [t for c, t in results if c in (429, 503)]
    other = n - len(accepted) - len(shed)
    return {"offered": n, "offered_per_s": round(rate, 2), "duration_s": duration_s, "wall_s": round(wall, 1),
            "codes": codes, "accepted_share": round(len(accepted) / n, 3), "shed_share": round(len(shed) / n, 3),
            "other": other, "accepted": percentiles(accepted) if accepted else None,
            "shed_latency": percentiles(shed) if shed else None, "rss_samples": rss}


async def _post(session, url: str, body: dict) -> tuple[int, float]:
    """(status, seconds); -1 for a connection failure, 0 for a timeout (both counted, never hidden)."""
    import aiohttp

    t = time.perf_counter()
    try:
        async with session.post(url, json=body) as r:
            await r.read()
            return r.status, time.perf_counter() - t
    except asyncio.TimeoutError:
        return 0, time.perf_counter() - t
    except aiohttp.ClientError:
        return -1, time.perf_counter() - t


def passed(result: dict) -> dict:
    """The issue's checks on a result of :func:`run`."""
    adm = result["admission"]
    rss = adm["rss_mb"]
    return {"only_200_or_overload": adm["other"] == 0,
            "p99_within_3x_unloaded": adm["p99_accepted_over_unloaded"] is not None
            and adm["p99_accepted_over_unloaded"] <= 3.0,
            # flat: no growth through the burst — the second half's peak within 5 % (+20 MB) of the
            # first half's, and no more after it (a queue that grows with the burst fails this;
            # the allocator's one-off arenas for the tokenising threads do not)
            "memory_flat": _flat(rss["every_2s"], rss["after"]),
            "healthy_after": adm["healthy_after"],
            "at_least_10x_capacity": result["factor"] >= 10 and adm["duration_s"] >= 30}


def _flat(samples: list[float], after: float | None) -> bool:
    if len(samples) < 4 or after is None:
        return False
    half = len(samples) // 2
    first, second = max(samples[:half]), max(samples[half:])
    return second <= first * 1.05 + 20 and after <= max(first, second) * 1.05 + 20
