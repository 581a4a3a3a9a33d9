"""`zelo report RUN_DIR`: one self-contained HTML file describing a finished run.

Everything is inline (figures are SVG drawn with matplotlib, no scripts, no fonts or styles from
the network), so the file opens anywhere, offline, and can be attached to a ticket. It reads only
what the run wrote:

* ``metrics.json`` — the metrics table with CIs and the deltas against hybrid; with per-query
  nDCG@10 (written since this report exists), each test query's win or loss against hybrid;
* ``annotate/zelo.parquet`` — the Elo scores' distributions, raw and calibrated, and the targets;
* ``annotate/report.json`` — judge agreement, position bias, missing votes, cost, calibration;
* ``train/model/zelo_card.json`` — the training and validation curve (``history``);
* in an audit directory (`zelo audit`), ``audit.json``, ``failures.parquet`` and ``history.jsonl``
  — the per-system comparison, the paired differences, the trend and the failing queries
  (:mod:`zelo_ray.workflows.report_audit`);
* ``annotate/slm/report.json`` and ``elo_tau.parquet`` (`zelo slm`) — the pairs each side judged,
  the SLM's held-out agreement before and after distillation, the τ between the ensemble-only and
  the mixed Elo, the calls saved (:mod:`zelo_ray.workflows.report_slm`).

A part the run did not produce (no qrels, no training yet) is left out with a line saying so.

    zelo report runs/cranfield            # → runs/cranfield/report.html
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

from zelo_ray.layout import RunLayout, layout_at
from zelo_ray.scoring.kinds import CARD
from zelo_ray.workflows.report_html import CSS, ci as _ci, figure as _figure
from zelo_ray.workflows.report_slm import slm_section

__all__ = ["add_report_command", "build_report", "write_report"]

SYSTEMS = ("bm25", "dense", "hybrid", "reranker", "reranker_model_only")
LABELS = {"reranker_model_only": "model only"}
def _metrics_section(metrics: dict) -> list[str]:
    rows = [s for s in SYSTEMS if s in metrics]
    if not rows:
        return ["<h2>Metrics</h2><p class=note>No labelled evaluation in this run "
                f"({html.escape(str(metrics.get('meta', {}).get('note', 'no qrels')))}).</p>"]
    meta = metrics.get("meta", {})
    out = ["<h2>Metrics</h2>",
           f"<p>{meta.get('test_queries', '?')} held-out test queries of {html.escape(str(meta.get('dataset', '')))} "
           f"(qrels/{html.escape(str(meta.get('split', '')))}); the reranker reorders the hybrid top-"
           f"{meta.get('rerank_depth', '?')}; {int(100 * meta.get('confidence', 0.95))}% paired bootstrap CIs "
           f"({meta.get('bootstrap', '?')} resamples).</p>",
           "<table><tr><th>system</th><th>nDCG@10</th><th>Recall@100</th><th>MRR@10</th>"
           "<th>Δ nDCG@10 vs hybrid</th></tr>"]
    for s in rows:
        m = metrics[s]
        out.append(f"<tr><td>{LABELS.get(s, s)}</td><td>{_ci(m.get('ndcg@10'))}</td><td>{_ci(m.get('recall@100'))}</td>"
                   f"<td>{_ci(m.get('mrr@10'))}</td><td>{_ci(m.get('delta_vs_hybrid', {}).get('ndcg@10'), True)}</td></tr>")
    out.append("</table>")
    per = (metrics.get("per_query") or {}).get("ndcg@10") or {}
    if "hybrid" in per and "reranker" in per:
        out += _wins_section(per["reranker"], per["hybrid"])
    else:
        out.append("<p class=note>Per-query results were not stored by this run (re-run `zelo evaluate`).</p>")
    return out


def _wins_section(reranker: dict, hybrid: dict) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    qs = sorted(set(reranker) & set(hybrid))
    d = np.array([reranker[q] - hybrid[q] for q in qs])
    order = np.argsort(d)
    wins, losses = int((d > 1e-9).sum()), int((d < -1e-9).sum())
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.bar(range(len(d)), d[order], color=["#a3271f" if v < 0 else "#17703a" for v in d[order]], width=1.0)
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xlabel("test queries, sorted by the difference")
    ax.set_ylabel("Δ nDCG@10")
    ax.set_title("reranker − hybrid, per query")
    worst = [(qs[i], d[i]) for i in order[:5] if d[i] < 0]
    out = ["<h2>Per query: reranker vs hybrid</h2>",
           f"<p><span class=up>{wins} wins</span>, <span class=down>{losses} losses</span>, "
           f"{len(qs) - wins - losses} ties over {len(qs)} queries.</p>",
           _figure(fig, "Each bar is one test query: the reranker's nDCG@10 minus hybrid's.")]
    if worst:
        out.append("<p>Largest losses: " + ", ".join(f"query {html.escape(q)} ({v:+.3f})" for q, v in worst) + "</p>")
    return out


def _elo_section(run: RunLayout) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np
    import pyarrow.parquet as pq

    path = run.zelo
    if not path.exists():
        return ["<h2>Elo scores</h2><p class=note>No annotation in this run.</p>"]
    t = pq.read_table(path, columns=["query_id", "elo", "calibrated", "target"])
    elo = np.asarray(t["elo"].to_numpy(zero_copy_only=False), float)
    cal = np.asarray(t["calibrated"].to_numpy(zero_copy_only=False), float)
    target = np.asarray(t["target"].to_numpy(zero_copy_only=False), float)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, values, title in ((axes[0], elo, "Elo (per query)"), (axes[1], cal, "calibrated across queries"),
                              (axes[2], target, "training target")):
        v = values[np.isfinite(values)]
        ax.hist(v, bins=40, color="#3b6ea5")
        ax.set_title(title)
    axes[0].set_ylabel("documents")
    # the calibration moves every document of a query by the same offset
    qids = t["query_id"].to_pylist()
    offsets: dict[str, float] = {}
    for q, a, b in zip(qids, elo, cal):
        if np.isfinite(a) and np.isfinite(b):
            offsets.setdefault(q, b - a)
    fig2, ax = plt.subplots(figsize=(6, 2.6))
    ax.hist(list(offsets.values()), bins=30, color="#8a5a9e")
    ax.set_xlabel("calibration offset (calibrated − Elo)")
    ax.set_ylabel("queries")
    return ["<h2>Elo scores</h2>",
            f"<p>{t.num_rows:,} documents of {len(set(qids)):,} queries.</p>",
            _figure(fig, "Distributions of the fitted Elo scores, the cross-query calibrated scores and the "
                         "targets the reranker was trained on."),
            _figure(fig2, "Each query's calibration offset: how far the cross-query pairs moved its scores.")]


def _judges_section(report: dict) -> list[str]:
    import matplotlib.pyplot as plt

    out = ["<h2>Judges</h2>"]
    if report.get("label"):
        out.append(f"<p class=banner>{html.escape(report['label'])}: these judges are simulated.</p>")
    judges = report.get("judges") or {}
    out.append("<table><tr><th>judge</th><th>calls</th><th>missing</th><th>first-shown wins</th>"
               "<th>cost</th><th>latency p50</th></tr>")
    for name, j in judges.items():
        bias = (j.get("position_bias") or {}).get("first_shown_wins")
        spend = j.get("spend") or {}
        out.append(f"<tr><td>{html.escape(name)}</td><td>{j.get('calls', 0):,}</td>"
                   f"<td>{j.get('missing', 0):,} ({100 * j.get('missing_fraction', 0):.1f}%)</td>"
                   f"<td>{'—' if bias is None else f'{bias:.3f}'}</td><td>${spend.get('cost', 0):.4f}</td>"
                   f"<td>{spend.get('latency_p50_s', 0):.2f} s</td></tr>")
    out.append("</table>")
    agreement = report.get("agreement") or {}
    if agreement:
        out.append("<table><tr><th>judges</th><th>pairs</th><th>agreement</th><th>Cohen's κ</th></tr>")
        for pair, a in agreement.items():
            out.append(f"<tr><td>{html.escape(pair)}</td><td>{a.get('pairs', 0):,}</td>"
                       f"<td>{a.get('agreement', float('nan')):.3f}</td><td>{a.get('kappa', float('nan')):.3f}</td></tr>")
        out.append("</table>")
    biased = {n: j["position_bias"]["first_shown_wins"] for n, j in judges.items()
              if (j.get("position_bias") or {}).get("first_shown_wins") is not None}
    if biased:
        fig, ax = plt.subplots(figsize=(6, 2.2 + 0.25 * len(biased)))
        ax.barh(list(biased), list(biased.values()), color="#c07b2a")
        ax.axvline(0.5, color="#333", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of decisive votes won by the document shown first")
        out.append(_figure(fig, "Position bias: 0.5 is none (each pair is asked in both orders)."))
    cal = report.get("calibration") or {}
    if cal:
        out.append(f"<p>Cross-query calibration: {cal.get('cross_pairs', 0):,} cross-query pairs, offset SD "
                   f"{cal.get('offset_sd', float('nan')):.3f}, Kendall τ raw vs calibrated "
                   f"{cal.get('kendall_tau_raw_vs_calibrated', float('nan')):.3f}.</p>")
    return out


def _training_section(run: RunLayout) -> list[str]:
    import matplotlib.pyplot as plt

    card_path = run.model / CARD
    if not card_path.exists():
        return ["<h2>Training</h2><p class=note>No trained model in this run.</p>"]
    card = json.loads(card_path.read_text())
    out = ["<h2>Training</h2>",
           f"<p>{card.get('total_steps', '?')} steps on {card.get('training_groups', '?')} query groups in "
           f"{card.get('wall_s', '?')} s.</p>"]
    val = card.get("validation") or {}
    if val:
        out.append(f"<p>Validation on {val.get('queries')} held-out training queries ({html.escape(str(val.get('criterion')))}): "
                   f"best at step {val.get('best_step')} (nDCG@10 {val.get('val_ndcg@10') or float('nan'):.4f}).</p>")
    history = card.get("history") or []
    loss = [(h["step"], h["loss"]) for h in history if "loss" in h and h["loss"] == h["loss"]]
    vals = [(h["step"], h) for h in history if any(k.startswith("val_") for k in h)]
    if not loss and not vals:
        out.append("<p class=note>This model's card has no training curve (trained before curves were kept).</p>")
        return out
    fig, axes = plt.subplots(1, 2, figsize=(11, 3))
    if loss:
        axes[0].plot(*zip(*loss), marker="o", ms=3)
    axes[0].set_title("training loss")
    axes[0].set_xlabel("step")
    for key in sorted({k for _, h in vals for k in h if k.startswith("val_") and k != "val_score"}):
        pts = [(s, h[key]) for s, h in vals if key in h]
        axes[1].plot(*zip(*pts), marker="o", ms=3, label=key)
    axes[1].set_title("validation")
    axes[1].set_xlabel("step")
    if vals:
        axes[1].legend()
    out.append(_figure(fig, "Training loss every log interval; validation at every checkpoint."))
    return out


def build_report(run_dir: str | Path, paths: RunLayout | None = None) -> str:
    """The HTML text of a run's report. ``paths``: the run's layout when its stages wrote
    elsewhere (``*.output`` overrides); by default the folder's own."""
    import matplotlib

    matplotlib.use("Agg")
    run = Path(run_dir)
    paths = paths or layout_at(run)
    if not any(p.exists() for p in (paths.metrics, paths.annotate_report, run / "audit.json")):
        raise FileNotFoundError(f"{run}: no metrics.json, audit.json or annotate/report.json: not a run or "
                                "audit directory (run `zelo demo`, `zelo audit` or a stage first)")
    metrics = json.loads(paths.metrics.read_text()) if paths.metrics.exists() else {}
    ann = json.loads(paths.annotate_report.read_text()) if paths.annotate_report.exists() else {}
    label = metrics.get("meta", {}).get("label") or ann.get("label")
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>zelo-ray run {html.escape(run.name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>zelo-ray run: {html.escape(str(run))}</h1>",
             f"<p class=note>Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `zelo report`.</p>"]
    if label:
        parts.append(f"<p class=banner>{html.escape(label)}: the judges in this run are simulated from "
                     "qrels; its numbers show the pipeline works, not what LLM judges would give.</p>")
    if (run / "audit.json").exists():
        from zelo_ray.workflows.report_audit import audit_section

        parts += audit_section(run)
    else:
        parts += _metrics_section(metrics)
    parts += _elo_section(paths)
    parts += _judges_section(ann) if ann else ["<h2>Judges</h2><p class=note>No annotation report.</p>"]
    parts += slm_section(paths.slm)
    parts += _training_section(paths)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None, paths: RunLayout | None = None) -> Path:
    """Write the report (default ``<run_dir>/report.html``); returns its path."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    text = build_report(run_dir, paths)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def add_report_command(sub) -> None:
    """``zelo report RUN_DIR [--out FILE]`` on the CLI's subcommand parser."""
    p = sub.add_parser("report", help="one self-contained HTML file of a run: metrics with CIs, per-query wins "
                       "and losses, Elo distributions, judge agreement and position bias, training curve")
    p.add_argument("run_dir", help="a run directory (data.workdir of the run)")
    p.add_argument("--out", help="where to write it (default <run_dir>/report.html)")
    p.set_defaults(func=_cmd_report, command="report", run_command=False)


def _cmd_report(args) -> int:
    print(write_report(args.run_dir, args.out))  # a folder that is not a run: FileNotFoundError → exit 2
    return 0
