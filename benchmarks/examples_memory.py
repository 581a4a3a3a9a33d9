"""Peak memory of building the training examples: in one pass (`build_groups`, every document's
text and every group in the driver) vs chunk by chunk (`write_groups`, what `zelo train` runs),
same synthetic run, each in its own process so the peaks are its own. Reported: peak RSS and,
sampled from /proc, peak RssAnon (the process's own memory) and RssFile (mapped file pages the OS
can drop: the chunked path reads its staging file memory-mapped).

    .venv/bin/python -m benchmarks.examples_memory --queries 20000 --json docs/bench/examples_memory.json

A synthetic collection (`--docs` documents of about `--chars` characters) and a zELO table of
`--queries` queries × `--candidates` candidates; the examples file each way must be identical.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _make(root: Path, queries: int, candidates: int, docs: int, chars: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zelo_ray.data import prepare

    rng = np.random.default_rng(0)
    words = np.array(["wing", "flow", "heat", "shock", "boundary", "layer", "pressure", "mach", "lift", "drag"])
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    with open(beir / "corpus.jsonl", "w") as f:
        for i in range(docs):
            text = " ".join(words[rng.integers(0, len(words), chars // 6)])
            f.write(json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": text}) + "\n")
    with open(beir / "queries.jsonl", "w") as f:
        for j in range(queries):
            f.write(json.dumps({"_id": f"q{j:06d}", "text": f"question {j} on {words[j % len(words)]}"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq000000\td0\t1\n")
    prepare(str(beir), root / "data")
    qid = np.repeat([f"q{j:06d}" for j in range(queries)], candidates)
    # each query's candidates come from its own neighbourhood of the corpus (queries share
    # documents with their neighbours), as retrieval candidates do; not uniform over the corpus
    near = (np.repeat(np.arange(queries), candidates) * docs // queries
            + rng.integers(0, 2 * candidates, queries * candidates)) % docs
    did = np.array([f"d{i}" for i in near])
    pq.write_table(pa.table({"query_id": qid, "doc_id": did,
                             "rank": pa.array(np.tile(np.arange(1, candidates + 1), queries), pa.int32()),
                             "target": pa.array(rng.random(len(qid)), pa.float32()),
                             "elo": pa.array(rng.normal(size=len(qid)), pa.float32())}), root / "zelo.parquet")


class _Sampler:
    """Peak RssAnon (the process's own memory) and RssFile (pages of mapped files, which the OS
    can drop at any time) from /proc, sampled every 20 ms."""

    def __init__(self) -> None:
        import threading

        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                self.anon = max(self.anon, int(line.split()[1]) * 1024)
            elif line.startswith("RssFile:"):
                self.file = max(self.file, int(line.split()[1]) * 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._read()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._read()


def _child(mode: str, root: Path, out: Path) -> None:
    import pyarrow.parquet as pq

    from zelo_ray.data import open_collection
    from zelo_ray.train.examples import build_groups, write_groups
    from zelo_ray.data.texts import doc_texts, query_texts

    col = open_collection(root / "data")
    z = pq.read_table(root / "zelo.parquet")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sampler = _Sampler()
    t0 = time.perf_counter()
    kw = dict(group_size=8, candidates_per_query=None, seed=0)
    if mode == "one-pass":
        g = build_groups(z, query_texts(col), doc_texts(col, z["doc_id"].to_pylist()), **kw)
        pq.write_table(g, out)
    else:
        write_groups(z, col, out, **kw)
    wall = time.perf_counter() - t0
    sampler.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "wall_s": round(wall, 1), "peak_rss_gib": round(peak / 2**20, 3),
                      "peak_anon_gib": round(sampler.anon / 2**30, 3), "peak_file_gib": round(sampler.file / 2**30, 3),
                      "rss_before_gib": round(base / 2**20, 3)}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=20_000)
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--docs", type=int, default=500_000)
    p.add_argument("--chars", type=int, default=1000)
    p.add_argument("--json")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child[0], Path(a.child[1]), Path(a.child[2]))
        return 0
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make(root, a.queries, a.candidates, a.docs, a.chars)
        runs = []
        for mode in ("one-pass", "chunked"):
            r = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(root / f"{mode}.parquet")],
                               capture_output=True, text=True, check=True)
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(runs[-1], file=sys.stderr)
        same = pq.read_table(root / "one-pass.parquet").equals(pq.read_table(root / "chunked.parquet"))
        size = (root / "chunked.parquet").stat().st_size
    out = {"benchmark": "examples_memory", "queries": a.queries, "candidates": a.candidates, "docs": a.docs,
           "chars_per_doc": a.chars, "examples_file_mib": round(size / 2**20, 1), "identical": same, "runs": runs,
           "peak_anon_ratio_chunked_over_one_pass": round(runs[1]["peak_anon_gib"] / runs[0]["peak_anon_gib"], 3),
           "peak_rss_ratio_chunked_over_one_pass": round(runs[1]["peak_rss_gib"] / runs[0]["peak_rss_gib"], 3)}
    from zelo_ray.bench.commands import write_result

    write_result(out, a.json)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
