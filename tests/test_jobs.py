"""The full pipeline as a Ray job: `ray job submit` against a local `ray start --head`
(RAY_AUTH_MODE=disabled, 127.0.0.1 only), outputs mirrored to a `file://` output URI (the same
pyarrow code path as s3://), and a re-submission that resumes instead of redoing the work."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.test_data import write_beir
from zelo_ray.bench.common import free_port
from zelo_ray.train.models import tiny_encoder

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def cluster(ray_tmp):
    """A one-node Ray cluster started the way a real head node is (`ray start --head`)."""
    port, dash = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=true",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={ray_tmp}"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dash}"
    import requests

    deadline = time.time() + 120
    while True:
        try:
            if requests.get(f"{address}/api/version", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.time() < deadline, "ray start --head did not come up"
        time.sleep(1)
    yield address, env
    os.killpg(proc.pid, signal.SIGTERM)   # --block: the head's processes go down with it
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _tiny_config(root: Path) -> Path:
    rng = np.random.default_rng(0)
    topics = ["wing lift", "shock wave", "heat transfer", "jet noise"]
    docs, queries, qrels = [], [], []
    for t, topic in enumerate(topics):
        for i in range(6):
            docs.append({"_id": f"d{t}_{i}", "title": topic if i < 2 else "",
                         "text": f"{topic} study {i} " + " ".join(rng.choice(["flow", "model", "data"], 5))})
        for j in range(3):
            queries.append({"_id": f"q{t}_{j}", "text": f"{topic} question {j}"})
            qrels += [(f"q{t}_{j}", f"d{t}_{i}", 2 if i == 0 else 1) for i in range(2)]
    src = write_beir(root / "beir", docs, queries, qrels)
    cfg = {"data": {"dataset": str(src), "workdir": str(root / "work"), "output_uri": f"file://{root / 'durable'}"},
           "retrieve": {"k_bm25": 12, "k_dense": 12}, "annotate": {"top_n": 8, "calibration": {"k": 2}},
           "graph": {"k": 4},
           "train": {"base": tiny_encoder(root / "tiny", hidden=32, layers=1), "lr": 3e-3, "max_length": 32,
                     "epochs": 1, "cpus_per_worker": 0.5},
           "rerank": {"depth": 8}, "evaluate": {"bootstrap": 50}}
    path = root / "full.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _submit(address: str, env: dict, config: Path) -> str:
    r = subprocess.run([RAY, "job", "submit", f"--address={address}", "--",
                        sys.executable, str(ROOT / "pipelines" / "full.py"), "--config", str(config)],
                       env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return r.stdout


def test_full_pipeline_through_ray_job_submit(cluster, tmp_path):
    address, env = cluster
    config = _tiny_config(tmp_path)
    log = _submit(address, env, config)
    assert "succeeded" in log
    work, durable = tmp_path / "work", tmp_path / "durable"
    metrics = json.loads((durable / "metrics.json").read_text())
    for system in ("bm25", "dense", "hybrid", "reranker"):
        assert 0 <= metrics[system]["ndcg@10"]["mean"] <= 1
    assert (durable / "train" / "model" / "zelo_card.json").exists()
    assert pq.read_table(durable / "annotate" / "zelo.parquet").num_rows > 0
    assert "pushed" in log and "annotate done" in log

    # a fresh machine: the working directory is gone, the durable copy is not → resume, no re-judging
    shutil.rmtree(work)
    log = _submit(address, env, config)
    assert "pulled" in log
    assert "0 asked now" in log or "(0 asked now" in log, log[-3000:]
