"""The pairwise-SLM part of `zelo report`: what `zelo slm` wrote (``annotate/slm/report.json`` and
``annotate/slm/elo_tau.parquet``) — who judged how many pairs, what distillation did to the SLM's
agreement with the ensemble, how far its votes moved the Elo, and what they saved."""

from __future__ import annotations

import html
import json
from pathlib import Path

from zelo_ray.workflows.report_html import figure as _figure

__all__ = ["slm_section"]

_MEASURES = (("agreement", "agreement with the ensemble", "{:.3f}"),
             ("agreement_both_orders", "same verdict in both orders", "{:.3f}"),
             ("log_loss", "log-loss", "{:.3f}"),
             ("first_shown_share", "first-shown document wins", "{:.0%}"),
             ("decided", "decided pairs", "{:d}"))


def _fmt(value, spec: str) -> str:
    if value is None:
        return "—"
    try:
        return spec.format(value)
    except (TypeError, ValueError):
        return html.escape(str(value))


def _tau_figure(path: Path) -> str | None:
    import numpy as np
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    tau = pq.read_table(path, columns=["tau"])["tau"].drop_null().to_numpy()
    if not len(tau):
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    ax.hist(tau, bins=np.linspace(-1, 1, 21), color="#3b6ea5")
    ax.set_xlabel("Kendall τ per query (ensemble-only Elo vs mixed Elo)")
    ax.set_ylabel("queries")
    return _figure(fig, f"{len(tau)} queries: 1 means the SLM's votes left the ensemble's order of the "
                        "documents as it was at the same ensemble budget; 0 means unrelated.")


def slm_section(folder: Path) -> list[str]:
    """HTML for the SLM loop whose outputs are in ``folder`` (a run's `layout().slm`); empty when `zelo slm` did not run there."""
    path = folder / "report.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    pairs, d = r.get("pairs") or {}, r.get("distillation") or {}
    ens, slm = pairs.get("ensemble") or {}, pairs.get("slm") or {}
    out = ["<h2>Pairwise SLM</h2>",
           f"<p>The ensemble ({html.escape(', '.join(r.get('ensemble') or []))}) judged "
           f"{ens.get('pairs', 0):,} within-query pairs (teacher share {r.get('teacher_share', 0):.0%}); the SLM "
           f"distilled from them (<code>{html.escape(str(d.get('model', '')))}</code>, {d.get('steps', '?')} steps on "
           f"{d.get('train_pairs', '?')} pairs) "
           + (f"judged {slm.get('pairs', 0):,}.</p>" if r.get("slm_judged", True) else
              f"did not judge: it had not shown agreement with the ensemble, so its {slm.get('pairs', 0):,} pairs "
              "were left unjudged and the ensemble-only Elo is the result "
              "(<code>annotate.slm.require_agreement</code>).</p>")]
    if r.get("distillation_concern"):
        out.append(f"<p class=banner>Warning: {html.escape(r['distillation_concern'])}.</p>")
    before, after = d.get("heldout_before") or {}, d.get("heldout") or {}
    if before or after:
        out.append(f"<table><tr><th>held-out teacher pairs ({d.get('heldout_queries', '?')} queries)</th>"
                   "<th>base model</th><th>distilled</th></tr>")
        out += [f"<tr><td>{label}</td><td>{_fmt(before.get(k), spec)}</td><td>{_fmt(after.get(k), spec)}</td></tr>"
                for k, label, spec in _MEASURES]
        out.append("</table>")
    tau = r.get("tau_ensemble_only_vs_mixed") or {}
    if tau.get("mean") is not None:
        out.append(f"<p>Kendall τ between the ensemble-only Elo and the mixed Elo: mean {tau['mean']:.3f}, median "
                   f"{tau['median']:.3f} over {tau['queries']} queries.</p>")
    fig = _tau_figure(folder / "elo_tau.parquet")
    if fig:
        out.append(fig)
    s = r.get("saving") or {}
    spend = "".join(f", {label} {s[k]:,}" for k, label in (("tokens_saved", "tokens"), ("cost_saved", "cost"))
                    if s.get(k) is not None)
    out.append(f"<p>Saved: {s.get('ensemble_calls_saved', 0):,} ensemble calls{spend}, for "
               f"{s.get('slm_calls', 0):,} SLM calls.</p>")
    return out
