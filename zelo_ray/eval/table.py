"""The metrics table a person reads: one line per system, each metric as mean [CI low, CI high].

Example::

    >>> m = {k: {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6} for k in ("ndcg@10", "recall@100", "mrr@10")}
    >>> metrics_lines({"bm25": m}, ["bm25"], digits=2)
    ['bm25 ndcg@10 0.50 [0.40, 0.60]  recall@100 0.50 [0.40, 0.60]  mrr@10 0.50 [0.40, 0.60]']
"""

from __future__ import annotations

__all__ = ["METRICS", "metrics_lines"]

METRICS = ("ndcg@10", "recall@100", "mrr@10")


def metrics_lines(report: dict, systems: list[str], *, digits: int = 4, indent: str = "",
                  width: int | None = None, labels: dict[str, str] | None = None) -> list[str]:
    """One line per system of ``report`` (``report[system][metric]`` holds mean, ci_low, ci_high)
    present in it, names padded to ``width`` (default: the longest name + 1)."""
    labels = labels or {}
    rows = [s for s in systems if s in report]
    width = width or max((len(labels.get(s, s)) for s in rows), default=0) + 1
    out = []
    for system in rows:
        m = report[system]
        cells = "  ".join(f"{k} {m[k]['mean']:.{digits}f} [{m[k]['ci_low']:.{digits}f}, {m[k]['ci_high']:.{digits}f}]"
                          for k in METRICS)
        out.append(f"{indent}{labels.get(system, system):{width}s}{cells}")
    return out
