"""Check of issue #13: `zelo index` + `zelo retrieve` + `zelo evaluate` complete on every BEIR
collection in ../shared/datasets and on one whose queries are hostile to parsers (the Cranfield
corpus and queries plus the queries below: `_`-joined identifiers, query syntax, unbalanced
quotes, control characters, right-to-left scripts, emoji, 10,000 characters, nothing left after
stop-word removal). Each command runs as a user would run it (the installed `zelo` CLI, one
process per command); the script records each collection's BM25/dense/hybrid nDCG@10 and the
failed-record count of retrieval.

    .venv/bin/python -m benchmarks.hostile_queries --json docs/bench/hostile_queries.json [--all]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
HOSTILE = [
    "The origin of the CRF01_1b2k protein occurred between 1923 and 1956.",
    "snake_case_identifier and __init__ in my_module.py",
    'title:"boundary layer" AND (shock OR "wave',
    "NOT + - ^ ~ * \\ [ ] { } ( ) : ! ? && ||",
    "lift^3 drag~2 wing* ?ing",
    "\"unbalanced quote in a flow problem",
    "the of and a an to in",
    "",
    "\x00 nul \x07 bell \x1b escape",
    "שלום עולם مرحبا بالعالم heat transfer",
    "emoji 😀👩‍🔬 supersonic ✈️ flow",
    "zero\u200bwidth \u202eright-to-left override\u202c \ufeffBOM",
    "boundary layer " * 667,  # ~10,000 characters
]


def _zelo(*args: str) -> dict:
    zelo = str(Path(sys.executable).with_name("zelo"))
    t0 = time.perf_counter()
    proc = subprocess.run([zelo, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"zelo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"stdout": proc.stdout, "stderr": proc.stderr, "seconds": round(time.perf_counter() - t0, 1)}


def hostile_collection(root: Path) -> Path:
    """Cranfield plus the hostile queries (unjudged: they must run, they cannot be scored)."""
    src, dst = SHARED / "cranfield", root / "cranfield-hostile"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    with open(dst / "queries.jsonl", "a", encoding="utf-8") as f:
        for i, text in enumerate(HOSTILE):
            f.write(json.dumps({"_id": f"hostile_{i}", "text": text}, ensure_ascii=False) + "\n")
    return dst


def check(dataset: str, work: Path) -> dict:
    out = {"dataset": Path(dataset).name}
    base = ["--dataset", dataset, "--workdir", str(work)]
    out["index_s"] = _zelo("index", *base)["seconds"]
    r = _zelo("retrieve", *base)
    report = json.loads(r["stdout"])
    out.update(retrieve_s=r["seconds"], queries=report["queries"], failed_queries=report["failed"]["failed"])
    e = _zelo("evaluate", *base, "--split", "test", "--json")
    metrics = json.loads(e["stdout"])
    out["ndcg@10"] = {s: metrics[s]["ndcg@10"]["mean"] for s in ("bm25", "dense", "hybrid")}
    out["judged_queries"] = metrics["meta"]["judged_queries"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/hostile", help="work directory (indexes and candidates)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--all", action="store_true", help="also the five shared collections (~15 min more: "
                   "`zelo bench quality` runs the same stages on them)")
    args = p.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    datasets = [str(SHARED / n) for n in ("cranfield", "cisi", "med", "cacm", "vaswani")] if args.all else []
    datasets.append(str(hostile_collection(root)))
    results = []
    for d in datasets:
        res = check(d, root / Path(d).name)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps({"check": "hostile_queries", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
