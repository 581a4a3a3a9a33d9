"""The annotate stage at 10k, 30k and 112k queries (issue #16): driver peak memory and votes/s,
bucketed (this code) against the one-pass stage it replaced, measured in the same session.

    # each size in its own process, so every peak is that run's alone
    for q in 10000 30000 112000; do
      .venv/bin/zelo bench annotate-scale --queries $q --executor ray --workdir /tmp/s$q --json /tmp/s$q.json
    done
    # the same 112k run again: nothing left to ask
    .venv/bin/zelo bench annotate-scale --queries 112000 --executor ray --workdir /tmp/s112000 --json /tmp/rerun.json
    # the one-pass baseline: the same command from a checkout of the commit before the buckets
    .venv/bin/python -m benchmarks.annotate_scale_series --new /tmp/s10000.json /tmp/s30000.json \
        /tmp/s112000.json --rerun /tmp/rerun.json --baseline base10k.json base30k.json \
        --json docs/bench/annotate_scale_series.json --plot docs/annotate_scale.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _row(r: dict) -> dict:
    return {k: r.get(k) for k in ("queries", "votes", "asked", "wall_s", "votes_per_s", "peak_rss_gib",
                                  "peak_rss_after_setup_gib", "buckets", "stage_s", "converged_queries")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new", nargs="+", required=True, help="annotate-scale JSONs of this code")
    p.add_argument("--rerun", help="annotate-scale JSON of a re-run with nothing left to ask")
    p.add_argument("--baseline", nargs="*", default=[], help="annotate-scale JSONs of the one-pass stage")
    p.add_argument("--json", required=True)
    p.add_argument("--plot", required=True)
    a = p.parse_args(argv)
    new = sorted((_row(json.loads(Path(f).read_text())) for f in a.new), key=lambda r: r["queries"])
    base = sorted((_row(json.loads(Path(f).read_text())) for f in a.baseline), key=lambda r: r["queries"])
    out = {"bucketed": new, "one_pass_baseline": base}
    if a.rerun:
        out["rerun_nothing_to_ask"] = _row(json.loads(Path(a.rerun).read_text()))
    if len(new) >= 2:
        # memory per extra query, from the two largest runs: what the driver keeps per query
        x0, x1 = new[-2], new[-1]
        slope = (x1["peak_rss_gib"] - x0["peak_rss_gib"]) / (x1["queries"] - x0["queries"])
        last = new[-1]
        out["projection_1m_queries"] = {
            "peak_rss_gib": round(last["peak_rss_gib"] + slope * (1_000_000 - last["queries"]), 2),
            "gib_per_million_queries": round(slope * 1e6, 3),
            "wall_min": round(last["wall_s"] * 1_000_000 / last["queries"] / 60, 1)}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot([r["queries"] for r in new], [r["peak_rss_gib"] for r in new], "o-", label="bucketed (this code)")
    if base:
        ax.plot([r["queries"] for r in base], [r["peak_rss_gib"] for r in base], "s--",
                label="one pass (before)")
    ax.axhline(2.0, color="grey", lw=0.8, ls=":", label="2 GiB target")
    ax.set_xlabel("queries (× 100 candidates, k = 8, one simulated judge)")
    ax.set_ylabel("driver peak RSS (GiB)")
    ax.set_title("zelo annotate, Ray executor, 2 cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.plot, dpi=120)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
