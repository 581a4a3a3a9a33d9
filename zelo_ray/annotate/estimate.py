"""What a judging run would cost, before any call is made (`zelo audit --dry-run`, the cost cap).

Plans the run exactly as :func:`zelo_ray.annotate.run.run_annotate` does (same buckets, pairs,
calls and cache keys), drops the calls the vote store has already answered, and prices the rest
per judge. Input tokens are the prompt's characters / 4 (the rate limiter's estimate); output
tokens are taken at each judge's ``max_tokens``, so the cost is an upper bound.

    >>> from zelo_ray.annotate.estimate import prompt_chars
    >>> prompt_chars("q", "a", "b", max_doc_chars=4000) > 300   # the instructions themselves
    True
"""

from __future__ import annotations

import shutil

import numpy as np

from zelo_ray.config import ZeloConfig
from zelo_ray.judges.prompt import build_messages
from zelo_ray.judges.store import VoteStore
from zelo_ray.layout import layout

__all__ = ["estimate_annotate", "prompt_chars"]


def prompt_chars(query: str, first: str, second: str, *, query_b: str | None = None, max_doc_chars: int,
                 fmt: str = "json_schema") -> int:
    msgs = build_messages(query, first, second, query_b=query_b, max_doc_chars=max_doc_chars, fmt=fmt)
    return sum(len(m["content"]) for m in msgs)


def estimate_annotate(cfg: ZeloConfig, *, qrels=None, candidates: str | None = None, collection=None,
                      queries: list[str] | None = None) -> dict:
    """``{calls, reused, usd, judges: {name: {calls, reused, input_tokens, output_tokens, usd}}}``
    for the calls a run with these arguments would still ask."""
    from zelo_ray.annotate.run import _inputs, pairs_step, plan_step, tasks_step

    out = layout(cfg).annotate
    out.mkdir(parents=True, exist_ok=True)
    judges = {j.name: j for j in cfg.annotate.judges}
    per = {n: {"calls": 0, "reused": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0} for n in judges}
    run = _inputs(cfg, qrels, candidates, collection, queries)
    store = VoteStore(out / "votes")
    store.organize()
    try:
        plan = plan_step(cfg, run, out, lambda _: None)
        for b in range(plan.n_buckets):
            graph = pairs_step(cfg, plan, b, out)
            calls = tasks_step(cfg, run, graph, store, None)
            later = _later_rounds(cfg, graph.nodes)
            all_judges = calls.tasks["judge"].to_numpy(zero_copy_only=False)
            todo = calls.todo.to_pydict()
            for name, j in judges.items():
                mine = [i for i, n in enumerate(todo["judge"]) if n == name]
                per[name]["calls"] += len(mine) + later  # an adaptive run's later rounds: every judge asked
                per[name]["reused"] += int((all_judges == name).sum()) - len(mine)
                if calls.texts is None or not mine:
                    continue
                t, mdc = calls.texts, getattr(j, "max_doc_chars", 4000)
                fmt = getattr(j, "response_format", "json_schema")
                chars = np.array([prompt_chars(t.query(todo["query_id"][i]), t.doc(todo["doc_a"][i]),
                                               t.doc(todo["doc_b"][i]), max_doc_chars=mdc, fmt=fmt,
                                               query_b=t.query(todo["query_b"][i]) if todo["query_b"][i] else None)
                                  for i in mine])
                tin = int(np.ceil(chars / 4).sum())
                tout = len(mine) * int(getattr(j, "max_tokens", 0))
                if later:  # adaptive rounds not chosen yet: prompts like the first round's
                    tin += int(later * tin / len(mine))
                    tout += later * int(getattr(j, "max_tokens", 0))
                per[name]["input_tokens"] += tin
                per[name]["output_tokens"] += tout
                per[name]["usd"] += float(j.cost(tin, tout))
    finally:
        shutil.rmtree(out / ".buckets", ignore_errors=True)
    for p in per.values():
        p["usd"] = round(p["usd"], 4)
    return {"calls": sum(p["calls"] for p in per.values()), "reused": sum(p["reused"] for p in per.values()),
            "usd": round(sum(p["usd"] for p in per.values()), 4), "judges": per}


def _later_rounds(cfg: ZeloConfig, nodes) -> int:
    """Pairs an adaptive run adds after its first round (their choice waits for the votes; their
    number does not): 0 for the other strategies. An upper bound on a resumed run's."""
    if cfg.graph.strategy != "adaptive" or nodes.num_rows == 0:
        return 0
    from zelo_ray.annotate.pairs import query_bounds
    from zelo_ray.core.adaptive import round_budgets

    starts, _ = query_bounds(nodes)
    sizes = np.diff(np.r_[starts, nodes.num_rows])
    return int(sum(sum(round_budgets(int(n), cfg.graph.k, cfg.graph.rounds)[1:]) for n in sizes))

