"""Builders the test modules share (each module makes its own fixtures from them, so no test
module imports another)."""

import gzip
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def write_beir(folder: Path, docs, queries, qrels=None, gz=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs)
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt") as fh:
            fh.write(lines)
    else:
        (folder / "corpus.jsonl").write_text(lines)
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    if qrels is not None:
        (folder / "qrels").mkdir(exist_ok=True)
        (folder / "qrels" / "test.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return folder


N_QUERIES, N_DOCS = 5, 24


def annotate_workdir(root: Path) -> tuple[Path, Path]:
    """A tiny collection with graded qrels and a candidates table (no index needed): (root, source)."""
    from zelo_ray.config import load_config
    from zelo_ray.data import prepare
    from zelo_ray.layout import layout

    rng = np.random.default_rng(3)
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": f"document {i} about topic {i % 4}"}
            for i in range(N_DOCS)]
    queries = [{"_id": f"q{j}", "text": f"question {j} on topic {j % 4}"} for j in range(N_QUERIES)]
    qrels = [(f"q{j}", f"d{i}", int(rng.integers(0, 4))) for j in range(N_QUERIES) for i in range(N_DOCS)
             if rng.random() < 0.6]
    src = write_beir(root / "beir", docs, queries, qrels)
    cfg = load_config(None, [f"data.dataset={src}", f"data.workdir={root}/run"])
    prepare(str(src), layout(cfg).data)
    rows = []
    for j in range(N_QUERIES):
        for r, i in enumerate(rng.permutation(N_DOCS)):
            rows.append({"query_id": f"q{j}", "doc_id": f"d{i}", "rank": r + 1})
    out = layout(cfg).candidates
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "part-0.parquet")
    return root, src


def annotate_cfg(workdir, name, *extra):
    """The annotation config of :func:`annotate_workdir`'s run, writing to ``<root>/<name>``."""
    from zelo_ray.config import load_config

    root, src = workdir
    return load_config(None, [f"data.dataset={src}", f"data.workdir={root}/run",
                              f"annotate.output={root}/{name}", "annotate.top_n=12", "graph.k=4",
                              "annotate.calibration.k=2", "annotate.executor=local", *extra])


CORPUS_WORDS = "wing lift drag flow shock boundary layer heat plate cone jet nozzle".split()


def bm25_corpus(tmp: Path):
    """A prepared 300-document collection of aerodynamics words (document 17 says 'hypersonic')."""
    from zelo_ray.data import prepare

    rng = np.random.default_rng(0)
    docs = [{"_id": f"d{i}", "title": f"title {CORPUS_WORDS[i % len(CORPUS_WORDS)]}",
             "text": " ".join(rng.choice(CORPUS_WORDS, 20))} for i in range(300)]
    docs[17]["text"] += " hypersonic hypersonic"
    src = write_beir(tmp / "beir", docs, [{"_id": "q", "text": "x"}])
    return prepare(str(src), tmp / "data")


TOY_WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]


def toy_groups(n_groups=48, group=8, seed=0):
    """Relevance is whether the document repeats the query's word: learnable by a tiny model."""
    rng = np.random.default_rng(seed)
    rows = {"query_id": [], "query": [], "doc_ids": [], "docs": [], "targets": [], "elo": []}
    for g in range(n_groups):
        w = TOY_WORDS[g % len(TOY_WORDS)]
        rel = rng.random(group) < 0.5
        docs = [f"{w} {w} text" if r else f"{TOY_WORDS[(g + 1 + k % 5) % len(TOY_WORDS)]} other text"
                for k, r in enumerate(rel)]
        rows["query_id"].append(f"q{g}")
        rows["query"].append(w)
        rows["doc_ids"].append([f"d{g}_{k}" for k in range(group)])
        rows["docs"].append(docs)
        rows["targets"].append([0.9 if r else 0.1 for r in rel])
        rows["elo"].append([2.0 if r else -2.0 for r in rel])
    return pa.table(rows)


def missing(reason: str) -> None:
    """A test's dependency (vLLM, its model, Chromium) is not here: skip on a developer's
    machine, fail under CI (``CI`` set), where every dependency is installed by the project's own
    scripts and a skip would let a green run hide a broken install."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_vllm(model: Path) -> None:
    """vLLM importable and ``model`` on disk, else :func:`missing`."""
    if importlib.util.find_spec("vllm") is None:
        missing("vLLM is not installed (make test-vllm runs this in .venv-vllm)")
    if not model.exists():
        missing(f"{model} missing: run scripts/setup-vllm.sh")


def kill_annotate_and_rerun(config: Path, env: dict, out: Path, server, *, kill_at: int,
                            check_stored=None) -> dict:
    """`zelo annotate --config <config>` in its own process group, SIGKILLed (driver and Ray)
    once ``out/votes`` holds ``kill_at`` answers; then, after the store stops growing (Ray's
    callers outlive the driver for a moment and log the answers still arriving), the same
    command again. ``check_stored(n)`` asserts on the answers stored at the kill before the
    re-run. Returns the keys stored at the kill, the server's calls and answers of the first run
    and the calls of the second."""
    import signal
    import subprocess
    import sys
    import time

    from zelo_ray.judges.store import VoteStore

    cmd = [sys.executable, "-m", "zelo_ray.cli", "annotate", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline and (
            not (out / "votes").exists() or len(VoteStore(out / "votes").answered_keys()) < kill_at):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    counts = []
    while len(counts) < 4 or len(set(counts[-4:])) > 1:
        counts.append(len(VoteStore(out / "votes").answered_keys()))
        time.sleep(0.5)
        assert len(counts) < 60, counts
    stored = set(VoteStore(out / "votes").answered_keys().tolist())
    if check_stored is not None:
        check_stored(len(stored))
    first = {"first_calls": dict(server.calls), "first_answered": {int(k) for k in server.answered}}
    server.calls.clear()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"stored": stored, **first, "second_calls": {int(k) for k in server.calls}}
