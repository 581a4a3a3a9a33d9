"""Does the pairwise SLM learn the ensemble at all? One distillation on a finished loop's teacher
outcomes, measured on held-out queries (issue #20's follow-up: data or model?).

Keeps the pairs the ensemble decided by at least ``--margin`` (ties teach "say ½"), samples
``--pairs`` of them, holds out ``--heldout`` of their queries, distils ``--base`` and prints the
held-out agreement before and after, as `zelo slm` measures it.

    .venv/bin/python -m benchmarks.slm_distil_probe --run runs/bench-slm/share-50 \\
        --epochs 1 --lr 1e-4 --json /tmp/probe-e1.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/bench-slm/share-50", help="a run directory where `zelo slm` ran")
    ap.add_argument("--base", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--margin", type=float, default=0.2, help="keep pairs with |p − ½| ≥ this")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--heldout", type=float, default=0.25, help="share of the sampled pairs' queries held out")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--doc-chars", type=int, default=300, help="documents cut as the bench's SLM judge cut them")
    ap.add_argument("--doc-format", choices=["served", "reranker"], default="served",
                    help="served: title line, cut to --doc-chars (what the judge reads since the prompt fix); "
                         "reranker: 'title. text' in full, shortened to fit --max-length (before it)")
    ap.add_argument("--json")
    args = ap.parse_args()

    import numpy as np
    import pyarrow.compute as pc

    from zelo_ray.data import open_collection
    from zelo_ray.data.texts import doc_texts, query_texts
    from zelo_ray.train.pairwise import pair_rows, train_pairwise
    from zelo_ray.workflows.slm_loop import served_docs, teacher_pairs

    run = Path(args.run)
    t = teacher_pairs(run / "annotate" / "slm" / "teacher" / "pair_outcomes.parquet", None, 0)
    t = t.filter(pc.greater_equal(pc.abs(pc.subtract(t["p_a"], 0.5)), args.margin))
    kept = t.num_rows
    if t.num_rows > args.pairs:
        t = t.take(np.sort(np.random.default_rng(0).choice(t.num_rows, size=args.pairs, replace=False)))
    col = open_collection(run / "data")
    ids = sorted(set(t["doc_a"].to_pylist() + t["doc_b"].to_pylist()))
    if args.doc_format == "reranker":
        docs = doc_texts(col, ids)
    else:
        docs = served_docs(col, ids, args.doc_chars)
    rows = pair_rows(t, query_texts(col), docs)
    r = train_pairwise(rows, base=args.base, out=None, heldout=args.heldout, epochs=args.epochs, batch_size=8,
                       lr=args.lr, max_length=args.max_length, seed=0, log=print, device="cpu")
    out = {"run": str(run), "decided_pairs_kept": kept, "sampled": t.num_rows, **vars(args),
           **{k: r.get(k) for k in ("steps", "train_pairs", "heldout_queries", "wall_s", "heldout_before", "heldout")}}
    print(json.dumps(out, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
