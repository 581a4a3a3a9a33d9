"""The audit part of `zelo report`: what `zelo audit` wrote (``audit.json``, ``failures.parquet``,
``history.jsonl``) as tables, figures and the failing queries with their documents side by side."""

from __future__ import annotations

import html
import json
from pathlib import Path

from zelo_ray.workflows.report_html import ci as _ci, figure as _figure

__all__ = ["audit_section"]

_SNIPPET = 400


def _snippet(text: str | None) -> str:
    text = text or ""
    return html.escape(text if len(text) <= _SNIPPET else text[:_SNIPPET] + " …")


def _systems_figure(audit: dict) -> str:
    import matplotlib.pyplot as plt

    names = list(audit["systems"])
    m = [audit["systems"][s]["ndcg@10"] for s in names]
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.45 * len(names)))
    y = list(range(len(names)))[::-1]
    ax.errorbar([x["mean"] for x in m], y, xerr=[[x["mean"] - x["ci_low"] for x in m], [x["ci_high"] - x["mean"] for x in m]],
                fmt="o", color="#3b6ea5", capsize=4)
    ax.set_yticks(y, names)
    ax.set_xlabel("zELO-graded nDCG@10")
    return _figure(fig, f"Each system's mean nDCG@10 on {audit['judged_queries']} audited queries, with its "
                        f"{int(100 * audit.get('confidence', 0.95))}% bootstrap interval.")


def _history_figure(history: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [h["label"] for h in history]
    for s in dict.fromkeys(s for h in history for s in h["systems"]):
        pts = [(i, h["systems"][s]["ndcg@10"]) for i, h in enumerate(history) if s in h["systems"]]
        ax.errorbar([i for i, _ in pts], [p["mean"] for _, p in pts],
                    yerr=[[p["mean"] - p["ci_low"] for _, p in pts], [p["ci_high"] - p["mean"] for _, p in pts]],
                    marker="o", capsize=3, label=s)
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_ylabel("nDCG@10")
    ax.legend(fontsize=8)
    return _figure(fig, "Each audit in this directory's history (samples differ from audit to audit).")


def _failures(run: Path, audit: dict, shown: int) -> list[str]:
    import pyarrow.parquet as pq

    path = run / "failures.parquet"
    if not path.exists():
        return []
    rows = pq.read_table(path).to_pylist()
    out = [f"<h3>Failing queries</h3><p>A query fails for a system when the zELO-best document of the pool is "
           f"not in its top {audit['fail_rank']}. Largest score gap first; all {len(rows):,} are in "
           f"<code>{html.escape(str(path))}</code>.</p>"]
    for s in audit["systems"]:
        mine = [r for r in rows if r["system"] == s]
        if not mine:
            out.append(f"<p><b>{html.escape(s)}</b>: no failing query.</p>")
            continue
        out.append(f"<p><b>{html.escape(s)}</b>: {len(mine):,} failing queries.</p><table class=fail>"
                   "<tr><th>query</th><th>zELO-best document</th><th>the system's first result</th></tr>")
        for r in mine[:shown]:
            where = "not retrieved" if r["best_rank"] is None else f"ranked {r['best_rank']}"
            top = (f"<b>{html.escape(str(r['system_top_doc']))}</b> (score {r['system_top_score']})<br>"
                   f"{_snippet(r['system_top_text'])}" if r["system_top_doc"] else "<i>no results</i>")
            out.append(f"<tr><td>{html.escape(r['query'])}<br><span class=note>{html.escape(r['query_id'])}</span></td>"
                       f"<td><b>{html.escape(r['best_doc'])}</b> (score {r['best_score']}, {where})<br>"
                       f"{_snippet(r['best_text'])}</td><td>{top}</td></tr>")
        out.append("</table>")
    return out


def audit_section(run: Path) -> list[str]:
    audit = json.loads((run / "audit.json").read_text())
    failures_shown = audit.get("failures_shown", 20)
    k = audit["pool"]["depth"]
    s = audit["sampling"]
    out = [f"<h2>Audit {html.escape(str(audit['label']))}</h2>",
           f"<p>{s['sampled']:,} queries ({html.escape(s['rule'])}) of {s['distinct_queries']:,} from "
           f"<code>{html.escape(s['source'])}</code>; {len(audit['systems'])} systems pooled at depth {k} → "
           f"{audit['pool']['documents']:,} documents; {audit['judging']['judge_calls']:,} judge calls "
           f"(${audit['judging']['total_cost'] or 0:.4f}). {audit['judged_queries']:,} queries have a document "
           f"graded relevant; {len(audit['no_relevant_queries']):,} have none (every system failed them).</p>",
           f"<table><tr><th>system</th><th>nDCG@10</th><th>Recall@{k}</th><th>MRR@10</th><th>failing queries</th></tr>"]
    for name, m in audit["systems"].items():
        out.append(f"<tr><td>{html.escape(name)}</td><td>{_ci(m['ndcg@10'])}</td><td>{_ci(m[f'recall@{k}'])}</td>"
                   f"<td>{_ci(m['mrr@10'])}</td><td>{audit['failures'].get(name, 0):,}</td></tr>")
    out.append("</table>")
    out.append(_systems_figure(audit))
    if audit["paired"]:
        out.append("<h3>Paired differences</h3><table><tr><th>systems</th><th>Δ nDCG@10</th>"
                   f"<th>Δ Recall@{k}</th></tr>")
        for pair, d in audit["paired"].items():
            n = d["ndcg@10"]
            cls = "up" if n["ci_low"] > 0 else "down" if n["ci_high"] < 0 else ""
            out.append(f"<tr><td class={cls or 'note'}>{html.escape(pair)}</td><td>{_ci(n, signed=True)}</td>"
                       f"<td>{_ci(d[f'recall@{k}'], signed=True)}</td></tr>")
        out.append("</table><p class=note>Paired bootstrap over the same queries; green or red: the interval "
                   "excludes 0.</p>")
    hist_path = run / "history.jsonl"
    history = [json.loads(x) for x in hist_path.read_text().splitlines() if x.strip()] if hist_path.exists() else []
    if len(history) > 1:
        out += ["<h3>History</h3>", _history_figure(history)]
    out += _failures(run, audit, failures_shown)
    return out
