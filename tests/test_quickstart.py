"""The simulated annotation step of `zelo demo` on a hand-made candidates set (no Ray)."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.config import load_config
from zelo_ray.quickstart import simulated_elo
from zelo_ray.retrieval.search import CANDIDATES


def test_simulated_elo_recovers_qrels_order(tmp_path):
    rng = np.random.default_rng(0)
    rows = {n: [] for n in CANDIDATES.names}
    qrels = {}
    for q in range(5):
        qid = f"q{q}"
        docs = [f"d{q}-{i}" for i in range(30)]
        qrels[qid] = {d: int(g) for d, g in zip(docs, rng.integers(0, 4, 30)) if g > 0}
        for r, d in enumerate(rng.permutation(docs), 1):
            for name, v in zip(CANDIDATES.names, (qid, d, r, 1 / (60 + r), None, None, None, None)):
                rows[name].append(v)
    qrels["unjudged"] = {}
    path = tmp_path / "candidates.parquet"
    pq.write_table(pa.table(rows, schema=CANDIDATES), path)
    cfg = load_config(None, ["judges.noise_sd=0.0", "judges.uniform_mix=0.0"])
    table, stats = simulated_elo(path, qrels, cfg, top_n=20)
    assert stats["queries"] == 5 and stats["converged_queries"] == 5
    assert table.num_rows == 5 * 20 and set(table["label"].to_pylist()) == {"SIMULATION"}
    assert stats["pairs"] == 5 * 20 * cfg.graph.k // 2
    t = table.to_pandas()
    for _, g in t.groupby("query_id"):
        assert abs(g["elo"].sum()) < 1e-6  # sum-zero per query
        corr = np.corrcoef(g["elo"], g["qrels_gain"])[0, 1]
        assert corr > 0.8


def test_pipeline_entrypoint_help():
    out = subprocess.run([sys.executable, "pipelines/retrieve.py", "--help"], capture_output=True,
                         text=True, check=True)
    assert "--config" in out.stdout and "--set" in out.stdout
