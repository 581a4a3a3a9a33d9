"""`zelo bench serve-peers`: `zelo serve` against the servers a user would run instead (#32).

The same cross-encoder checkpoint and the same requests — ``requests`` per phase, each of
``min_docs``–``max_docs`` documents of ``min_tokens``–``max_tokens`` tokens, sent by ``clients``
concurrent clients — go to each system in turn, alternated over ``rounds`` (the order rotates
every round, so a slow minute of a shared machine does not land on one system):

* ``zelo:<backend>`` — `zelo serve` (Ray Serve, Cohere ``/v1/rerank``) on torch, onnx or
  onnx-int8; documents are cut to one 512-token pair as Infinity cuts them (``long_documents:
  truncate``), and admission control is opened wide (Infinity has none: every request queues);
* ``infinity:<engine>`` — Infinity (``infinity_emb v2``, its own venv: ``make setup-infinity``)
  serving the same folder with its ``optimum`` engine (ONNX Runtime; given the folder's ONNX
  export and, on a CPU, the int8 quantisation it prefers, both made by its own optimum) or its
  ``torch`` engine;
* ``st`` — sentence-transformers ``CrossEncoder.predict`` in this process, one request after
  another: the floor a server should approach.

Reported per system: requests/s, documents/s, p50/p99 latency, and the ratios of the best
`zelo serve` to the best Infinity and to sentence-transformers. A first request is scored by
every system and the orders compared (the same model must rank alike).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from zelo_ray.bench.common import free_port, machine
from zelo_ray.bench.payloads import percentiles

__all__ = ["run"]

INFINITY = Path(".venv-infinity/bin")


def run(*, dataset: str = "nfcorpus", checkpoint: str | None = None, requests: int = 16, rounds: int = 2,
        clients: int = 16, min_docs: int = 20, max_docs: int = 100, min_tokens: int = 200,
        max_tokens: int = 2000, threads: int = 2,
        systems: tuple[str, ...] = ("zelo:onnx-int8", "infinity:optimum", "st"), log=print) -> dict:
    from zelo_ray.bench.serving import bench_checkpoint, corpus_texts

    ckpt, label = bench_checkpoint(checkpoint)
    bodies = _requests(corpus_texts(dataset), ckpt, requests * rounds, (min_docs, max_docs),
                       (min_tokens, max_tokens))
    out = {"machine": machine(), "checkpoint": label, "threads": threads, "clients": clients,
           "request": f"{min_docs}-{max_docs} documents of {min_tokens}-{max_tokens} tokens "
                      f"(mean {np.mean([len(b['documents']) for b in bodies]):.0f} documents)",
           "systems": list(systems), "rounds": rounds, "requests_per_phase": requests}
    with _Systems(ckpt, systems, threads, log) as running:
        out["agreement"] = _agreement(running, bodies[0])
        log(f"same model, same order: {out['agreement']}")
        phases = {s: [] for s in systems}
        for r in range(rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for s in order:
                part = bodies[r * requests:(r + 1) * requests]
                phases[s].append(running.measure(s, part, clients))
                log(f"round {r + 1}: {s}: {phases[s][-1]['docs_per_s']} docs/s")
    out["results"] = {s: _combine(p) for s, p in phases.items()}
    out["ratios"] = _ratios(out["results"])
    return out


def _requests(texts: list[str], ckpt: str, n: int, docs: tuple[int, int], tokens: tuple[int, int]) -> list[dict]:
    """Cohere-shaped bodies whose documents are cut to a drawn number of the model's tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        k = int(rng.integers(docs[0], docs[1] + 1))
        bodies = []
        for _ in range(k):
            want, parts, words = int(rng.integers(tokens[0], tokens[1] + 1)), [], 0
            while words < want:  # a word is at least one token
                t = texts[int(rng.integers(len(texts)))]
                parts.append(t)
                words += len(t.split())
            text = " ".join(parts)
            offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
            bodies.append(text[:offsets[min(want, len(offsets)) - 1][1]])
        out.append({"query": " ".join(texts[i % len(texts)].split()[:8]), "documents": bodies})
    return out


class _Systems:
    """The servers of ``systems`` started side by side (an idle one costs memory, not CPU)."""

    def __init__(self, ckpt: str, systems: tuple[str, ...], threads: int, log):
        self.ckpt, self.systems, self.threads, self.log = ckpt, systems, threads, log
        self.urls: dict[str, str] = {}
        self.health: dict[str, str] = {}
        self.logs: dict[str, tuple] = {}
        self.procs: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="zelo-peers-"))
        self.st = None

    def __enter__(self) -> "_Systems":
        try:
            zelo = [s.split(":", 1)[1] for s in self.systems if s.startswith("zelo:")]
            if zelo:
                self._start_zelo(zelo)
            for s in self.systems:
                if s.startswith("infinity:"):
                    self._start_infinity(s.split(":", 1)[1])
            if "st" in self.systems:
                import torch
                from sentence_transformers import CrossEncoder

                torch.set_num_threads(self.threads)
                self.st = CrossEncoder(self.ckpt, max_length=512, device="cpu")
            for name, url in self.health.items():
                _wait(url, *self.logs.get(name, (None, None)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if any(s.startswith("zelo:") for s in self.systems):
            import ray
            from ray import serve

            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _start_zelo(self, backends: list[str]) -> None:
        import ray
        from ray import serve

        from zelo_ray.serve.app import build_app

        port = free_port()
        # logical CPUs: each app's replica reserves `threads`, only the measured one is busy
        ray.init(num_cpus=self.threads * len(backends), include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for b in backends:
            settings = {"checkpoint": self.ckpt, "backend": b, "num_cpus": self.threads,
                        "long_documents": "truncate", "max_tokens_per_doc": 512, "max_ongoing_requests": 64,
                        "max_pending_tokens": 1 << 30, "max_queued_requests": -1}
            serve.run(build_app(settings), name=f"zelo-{b}", route_prefix=f"/{b}", blocking=False)
            self.urls[f"zelo:{b}"] = f"http://127.0.0.1:{port}/{b}/v1/rerank"
            self.health[f"zelo:{b}"] = f"http://127.0.0.1:{port}/{b}/healthz"
        self.log(f"zelo serve: {', '.join(backends)} deploying")

    def _start_infinity(self, engine: str) -> None:
        if not (INFINITY / "infinity_emb").exists():
            raise RuntimeError("Infinity is not installed: run `make setup-infinity` (.venv-infinity)")
        folder = self.tmp / f"infinity-{engine}"
        shutil.copytree(self.ckpt, folder, ignore=shutil.ignore_patterns("onnx", "*.onnx"))
        if engine == "optimum":
            _optimum_export(folder, self.log)
        port = free_port()
        # a cache of its own: Infinity keeps optimised graphs under the hub cache by model name
        # ("." here), which a later run with another checkpoint would otherwise pick up
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(self.threads),
               "HF_HOME": str(self.tmp / f"hf-{engine}"),
               "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
        log = (self.tmp / f"infinity-{engine}.log").open("w")
        # the model as "." from inside its folder: given an absolute folder, Infinity 0.0.78 names
        # its ONNX file by its absolute path, which optimum 2.1 then fails to find
        self.procs.append(subprocess.Popen(
            [str(INFINITY.resolve() / "infinity_emb"), "v2", "--model-id", ".", "--served-model-name", "model",
             "--engine", engine, "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
             "--batch-size", "32", "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=folder))
        self.logs[f"infinity:{engine}"] = (self.procs[-1], Path(log.name))
        self.urls[f"infinity:{engine}"] = f"http://127.0.0.1:{port}/rerank"
        self.health[f"infinity:{engine}"] = f"http://127.0.0.1:{port}/health"
        self.log(f"infinity ({engine}): starting on port {port}")

    # -- measuring -------------------------------------------------------------------------------
    def scores(self, system: str, body: dict) -> np.ndarray:
        if system == "st":
            return np.asarray(self.st.predict([(body["query"], d) for d in body["documents"]], batch_size=32))
        req = urllib.request.Request(self.urls[system], data=json.dumps(self._body(system, body)).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            results = json.loads(r.read())["results"]
        s = np.empty(len(body["documents"]))
        for item in results:
            s[item["index"]] = item["relevance_score"]
        return s

    @staticmethod
    def _body(system: str, body: dict) -> dict:
        return {**body, "model": "model", "return_documents": False, "top_n": len(body["documents"])}

    def measure(self, system: str, bodies: list[dict], clients: int) -> dict:
        docs = sum(len(b["documents"]) for b in bodies)
        if system == "st":
            lat, t0 = [], time.perf_counter()
            for b in bodies:
                t = time.perf_counter()
                self.scores("st", b)
                lat.append(time.perf_counter() - t)
            wall, codes = time.perf_counter() - t0, {200: len(bodies)}
        else:
            from zelo_ray.bench.serving import post_many

            lat, codes, wall = asyncio.run(post_many(self.urls[system], [self._body(system, b) for b in bodies],
                                                      clients))
        return {"requests": len(bodies), "docs": docs, "seconds": wall, "latencies": lat,
                "codes": {str(k): v for k, v in codes.items()}, "docs_per_s": round(docs / wall, 1)}


def _optimum_export(folder: Path, log) -> None:
    """Infinity's own route to ONNX: optimum's export, then its int8 quantisation for this CPU
    (Infinity's optimum engine picks the quantised file on a CPU)."""
    cli = str(INFINITY / "optimum-cli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = folder.parent / (folder.name + "-onnx")
    subprocess.run([cli, "export", "onnx", "--model", str(folder), "--task", "text-classification", str(out)],
                   check=True, capture_output=True, env=env)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = "--avx512_vnni" if "avx512_vnni" in flags else "--avx512" if "avx512f" in flags else "--avx2"
    subprocess.run([cli, "onnxruntime", "quantize", "--onnx_model", str(out), "-o", str(out / "q"), isa],
                   check=True, capture_output=True, env=env)
    shutil.copy(out / "model.onnx", folder / "model.onnx")
    quantised = next((out / "q").glob("*quantized*.onnx"))
    shutil.copy(quantised, folder / "model_quantized.onnx")
    log(f"infinity (optimum): exported and quantised ({isa.lstrip('-')})")


def _wait(url: str, proc: subprocess.Popen | None = None, log: Path | None = None, timeout_s: float = 600) -> None:
    """Until ``url`` answers 200; a server process that exits first raises with its log's end."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{url}: the server exited with {proc.returncode} before answering:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(1)


def _agreement(running: _Systems, body: dict) -> dict:
    """Spearman of each system's scores of one request against the fp32 reference's
    (sentence-transformers when measured, else the first system)."""
    from scipy.stats import spearmanr

    s = {name: running.scores(name, body) for name in running.systems}
    ref = "st" if "st" in s else running.systems[0]
    return {f"{name} vs {ref}": round(float(spearmanr(s[ref], v).statistic), 4) for name, v in s.items()
            if name != ref}


def _combine(phases: list[dict]) -> dict:
    lat = [x for p in phases for x in p["latencies"]]
    wall = sum(p["seconds"] for p in phases)
    requests, docs = sum(p["requests"] for p in phases), sum(p["docs"] for p in phases)
    codes: dict[str, int] = {}
    for p in phases:
        for k, v in p["codes"].items():
            codes[k] = codes.get(k, 0) + v
    return {"requests": requests, "docs": docs, "seconds": round(wall, 1),
            "requests_per_s": round(requests / wall, 3), "docs_per_s": round(docs / wall, 1),
            "latency": percentiles(lat), "codes": codes,
            "per_round_docs_per_s": [p["docs_per_s"] for p in phases]}


def _ratios(results: dict) -> dict:
    def best(prefix):
        names = [n for n in results if n.startswith(prefix)]
        return max(names, key=lambda n: results[n]["docs_per_s"]) if names else None

    zelo, inf = best("zelo:"), best("infinity:")
    out = {}
    if zelo and inf:
        out[f"{zelo} / {inf}"] = round(results[zelo]["docs_per_s"] / results[inf]["docs_per_s"], 2)
    if zelo and "st" in results:
        out[f"{zelo} / st"] = round(results[zelo]["docs_per_s"] / results["st"]["docs_per_s"], 2)
    return out
