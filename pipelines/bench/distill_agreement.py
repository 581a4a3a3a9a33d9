"""Does distilling the ensemble into the pairwise SLM make it agree with the ensemble? (issue #20,
first measurement: in-process, the same forward pass vLLM serves, no vLLM.)

The ensemble's soft outcome on a run's judged pairs (``<annotate>/pair_outcomes.parquet``) trains
SmolLM2-135M-Instruct (the offline model) with `zelo distill`'s step; pairs of held-out *queries*
are asked in both orders before and after, and compared with the ensemble: agreement on decided
pairs, log-loss, first-shown share, and a sign test on the pairs whose verdict changed (could
chance explain the rise?). With simulated judges (the demo's run) the "ensemble" is the
qrels-driven simulation: SIMULATION.

    .venv/bin/python pipelines/bench/distill_agreement.py --run runs/cranfield --json docs/bench/distill_agreement.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zelo_ray.bench.commands import write_result  # noqa: E402
from zelo_ray.data import open_collection  # noqa: E402
from zelo_ray.data.texts import doc_texts, query_texts  # noqa: E402
from zelo_ray.train.pairwise import PairwiseLM, pair_rows, train_pairwise  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/cranfield", help="a run directory with annotate/pair_outcomes.parquet")
    ap.add_argument("--base", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--train-pairs", type=int, default=400)
    ap.add_argument("--heldout-pairs", type=int, default=300)
    ap.add_argument("--heldout-queries", type=float, default=0.2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--json")
    args = ap.parse_args()
    run = Path(args.run)
    t = pq.read_table(run / "annotate" / "pair_outcomes.parquet")
    t = t.filter(pc.is_valid(t["p_a"]))
    col = open_collection(run / "data")
    rng = np.random.default_rng(0)
    qids = sorted(set(t["query_id"].to_pylist()))
    held = set(rng.choice(qids, size=max(1, int(round(args.heldout_queries * len(qids)))), replace=False).tolist())
    is_held = np.array([q in held for q in t["query_id"].to_pylist()])
    train_idx = rng.permutation(np.flatnonzero(~is_held))[:args.train_pairs]
    test_idx = rng.permutation(np.flatnonzero(is_held))[:args.heldout_pairs]
    sub = t.take(np.r_[train_idx, test_idx])
    rows = pair_rows(sub, query_texts(col), doc_texts(col, sub["doc_a"].to_pylist() + sub["doc_b"].to_pylist()))
    # every held-out query's pairs go to the held-out side: the split inside train_pairwise is by query
    t0 = time.perf_counter()
    before_model = PairwiseLM.load(args.base)
    idx_te = list(range(len(train_idx), len(train_idx) + len(test_idx)))
    q = [rows["query"][i] for i in idx_te]
    a, b = [rows["a"][i] for i in idx_te], [rows["b"][i] for i in idx_te]
    p_ens = np.array([rows["p_a"][i] for i in idx_te])
    p_before = before_model.prob_first(q, a, b, max_length=args.max_length).numpy()
    del before_model
    train_rows = {k: [v[i] for i in range(len(train_idx))] for k, v in rows.items()}
    with tempfile.TemporaryDirectory() as tmp:
        r = train_pairwise(train_rows, base=args.base, out=tmp, heldout=0.0, epochs=args.epochs, batch_size=8,
                           lr=args.lr, max_length=args.max_length, log=lambda m: print(m, file=sys.stderr),
                           measure_before=False)
        model = PairwiseLM.load(tmp)
    p_after = model.prob_first(q, a, b, max_length=args.max_length).numpy()
    p_after_ba = model.prob_first(q, b, a, max_length=args.max_length).numpy()
    decided = np.abs(p_ens - 0.5) > 1e-9
    ok_before = (p_before > 0.5) == (p_ens > 0.5)
    ok_after = (p_after > 0.5) == (p_ens > 0.5)
    gained = int((~ok_before & ok_after & decided).sum())
    lost = int((ok_before & ~ok_after & decided).sum())
    sign = binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue if gained + lost else float("nan")
    out = {"label": "SIMULATION", "run": str(run), "base": args.base, "train_pairs": len(train_idx),
           "heldout_pairs": len(test_idx), "heldout_queries": len(held), "decided": int(decided.sum()),
           "steps": r["steps"], "train_wall_s": r["wall_s"], "wall_s": round(time.perf_counter() - t0, 1),
           "agreement_before": round(float(ok_before[decided].mean()), 4),
           "agreement_after": round(float(ok_after[decided].mean()), 4),
           "changed_verdicts": {"gained": gained, "lost": lost, "sign_test_p": sign},
           "first_shown_share_after": round(float(np.mean(np.r_[p_after, p_after_ba] > 0.5)), 4),
           "command": " ".join(sys.argv)}
    write_result(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
