"""`zelo audit`: evaluate any retrieval systems without human labels (the paper's "live
production evaluation" and "benchmarking private corpora").

sample the query log → each system's ranking of the sample (TREC run files, an existing
candidates set, live rerank endpoints) → pool every system's top-k per query → judge the pool's
pairs with the configured ensemble (cached, resumable, cost-capped) → Elo → cross-query
calibration → graded labels → per system nDCG@10 and Recall@k with bootstrap CIs, the paired
differences, and the failing queries (the zELO-best document not in a system's top ranks) with the
documents side by side. Each audit appends a line to ``history.jsonl`` and writes ``report.html``.

    zelo audit --dataset my-corpus/ --queries log.jsonl --sample 200 \\
        --run bm25=bm25.trec --run prod=prod.trec --label 2026-w48

The audit directory (``audit.output``, default ``<workdir>/audit``) is meant to be reused: next
week's sample only pays for the pairs it has not judged before, and the history grows.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.data.schema import DataError
from zelo_ray.faults import ErrorLog, StageFailed
from zelo_ray.layout import layout, layout_at

__all__ = ["add_audit_arguments", "audit_dir", "cmd_audit", "run_audit"]


def audit_dir(cfg: ZeloConfig) -> Path:
    return Path(cfg.audit.output or layout(cfg).workdir / "audit")


def _named(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise DataError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {flag} bm25=runs/bm25.trec")
        if name in out:
            raise DataError(f"{flag}: system name {name!r} is used twice")
        out[name] = value
    return out


def _best_documents(z: pa.Table) -> dict[str, tuple[str, float]]:
    """Each query's zELO-best document of the pool (highest calibrated score)."""
    col = "calibrated" if "calibrated" in z.column_names else "elo"
    best: dict[str, tuple[str, float]] = {}
    for q, d, s in zip(z["query_id"].to_pylist(), z["doc_id"].to_pylist(), z[col].to_pylist()):
        if s is not None and s == s and (q not in best or s > best[q][1]):
            best[q] = (d, round(float(s), 4))
    return best


def _failures_table(failures: list[dict], z: pa.Table, runs: dict, sample_text: dict, col) -> pa.Table:
    from zelo_ray.workflows.audit_inputs import doc_texts

    col_name = "calibrated" if "calibrated" in z.column_names else "elo"
    score = {(q, d): s for q, d, s in zip(z["query_id"].to_pylist(), z["doc_id"].to_pylist(), z[col_name].to_pylist())}
    tops = {(f["system"], f["query_id"]): (runs[f["system"]].get(f["query_id"]) or [None])[0] for f in failures}
    texts = doc_texts(col, [f["best_doc"] for f in failures] + [d for d in tops.values() if d])
    rows = []
    for f in failures:
        top = tops[(f["system"], f["query_id"])]
        top_score = score.get((f["query_id"], top)) if top else None
        rows.append({**f, "query": sample_text.get(f["query_id"], ""), "best_text": texts.get(f["best_doc"], ""),
                     "system_top_doc": top, "system_top_score": None if top_score is None else round(top_score, 4),
                     "system_top_text": texts.get(top, "") if top else "",
                     "gap": None if top_score is None else round(f["best_score"] - top_score, 4)})
    rows.sort(key=lambda r: (r["system"], -(r["gap"] if r["gap"] is not None else np.inf), r["query_id"]))
    schema = pa.schema([("system", pa.string()), ("query_id", pa.string()), ("query", pa.string()),
                        ("best_doc", pa.string()), ("best_score", pa.float64()), ("best_rank", pa.int64()),
                        ("best_text", pa.string()), ("system_top_doc", pa.string()),
                        ("system_top_score", pa.float64()), ("system_top_text", pa.string()), ("gap", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _append_history(path: Path, entry: dict) -> list[dict]:
    """Add this audit to the history (replacing an earlier audit with the same label)."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    lines = [x for x in lines if x.get("label") != entry["label"]] + [entry]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    tmp.replace(path)
    return lines


def run_audit(cfg: ZeloConfig, *, queries: str | None = None, runs: dict[str, str] | None = None,
              candidates: str | None = None, endpoints: dict[str, str] | None = None, label: str | None = None,
              retrieval: bool = False, dry_run: bool = False, log=print) -> dict:
    """Run (or resume) an audit; returns what ``audit.json`` holds (or the estimate, with ``dry_run``):
    sample the query log → pool the systems' top documents → judge the pool (zELO) → score every
    system on the zELO grades, list its failures → write audit.json, the history and the report."""
    acfg, out = cfg.audit, audit_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    label = label or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    errors = ErrorLog(out / "errors.parquet", "audit")
    errors.reset()
    t0 = time.perf_counter()
    col, sample, sampling, qrels, audit_col = _sample_step(cfg, out, queries, errors, log)
    systems, pool = _pool_step(cfg, col, out, sample, runs, candidates, endpoints, retrieval, errors, log)
    acfg2, kwargs, est = _judge_plan(cfg, out, pool, qrels, audit_col, log)
    sizes = [len(v) for v in pool.values()]
    if dry_run:
        return {"dry_run": True, "label": label, "sampling": sampling, "estimate": est,
                "systems": systems.info, "pool": {"queries": len(pool), "documents": sum(sizes)}}
    if acfg.max_usd is not None and est["usd"] > acfg.max_usd:
        raise StageFailed(f"estimated judge cost ${est['usd']:.2f} exceeds audit.max_usd=${acfg.max_usd:.2f}; "
                          "nothing was asked. Sample fewer queries, lower audit.pool_depth, or raise the cap "
                          "(--set audit.max_usd=…)")
    from zelo_ray.annotate.run import run_annotate

    ann = run_annotate(acfg2, log_fn=log, **kwargs)
    judged, scores, failures, ftable = _score_step(cfg, acfg2, col, sample, systems, out, log)
    failed = errors.finish()
    _log_scores(acfg, judged, ann, scores, failures, systems, log)
    result = {"label": label, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "simulated": ann["label"], "sampling": sampling, "systems_info": systems.info,
              "pool": {"depth": acfg.pool_depth, "queries": len(pool), "documents": sum(sizes)},
              "grades": acfg.grades, "fail_rank": acfg.fail_rank, "failures_shown": acfg.failures_shown,
              "confidence": acfg.confidence, "judged_queries": len(judged),
              "no_relevant_queries": sorted(set(pool) - set(judged)),
              "judging": {k: ann[k] for k in ("judge_calls", "asked_this_run", "reused", "missing_votes", "total_cost")},
              "estimate": est, **scores,
              "failures": {s: sum(1 for f in failures if f["system"] == s) for s in systems.runs},
              "bad_records": failed.num_rows, "errors": str(errors.path) if failed.num_rows else None,
              "wall_s": round(time.perf_counter() - t0, 1)}
    _write_step(out, result, scores, acfg, sample, len(ftable), failed, errors, log)
    return result


def _sample_step(cfg: ZeloConfig, out: Path, queries: str | None, errors: ErrorLog, log):
    """The collection, the sampled queries (and how), the qrels simulated judges need, and the
    audit's own collection of the sample."""
    from zelo_ray.data import prepare
    from zelo_ray.workflows.audit_inputs import load_sample, write_collection

    col = prepare(cfg.data.dataset, layout(cfg).data)
    sample, sampling = load_sample(cfg, col, queries, errors)
    log(f"[1/5] sample: {sampling['sampled']:,} of {sampling['distinct_queries']:,} distinct queries "
        f"({sampling['rule']}) from {sampling['source']}"
        + (f"; {sampling['bad_records']:,} bad records skipped" if sampling["bad_records"] else ""))
    qrels = None
    if any(j.simulated for j in cfg.annotate.judges):
        if not col.splits:
            raise DataError(f"{col.root}: simulated judges are driven by qrels and this collection has none; "
                            "configure LLM judges in annotate.judges (docs/judging.md)")
        qrels = pa.concat_tables(pq.read_table(col.qrels_path(s)) for s in col.splits)
    return col, sample, sampling, qrels, write_collection(out, col, sample, qrels)


def _pool_step(cfg: ZeloConfig, col, out: Path, sample, runs, candidates, endpoints, retrieval: bool,
               errors: ErrorLog, log):
    """Every system's ranking of the sample, and their pooled top-``audit.pool_depth`` per query."""
    from zelo_ray.eval.audit import pool_runs
    from zelo_ray.workflows.audit_inputs import load_systems, our_retrieval, write_pool

    acfg = cfg.audit
    ours = our_retrieval(cfg, out, log) if retrieval else None
    systems = load_systems(cfg, col, sample, runs=runs or {}, candidates=candidates, endpoints=endpoints or {},
                           errors=errors, log=log, retrieval=str(ours) if ours else None)
    pool = pool_runs(systems.runs, [q.query_id for q in sample], depth=acfg.pool_depth)
    pool = {q: docs for q, docs in pool.items() if len(docs) >= 2}
    sizes = [len(v) for v in pool.values()]
    log(f"[2/5] pool: {len(systems.runs)} systems ({', '.join(systems.runs)}) × top-{acfg.pool_depth} → "
        f"{sum(sizes):,} documents for {len(pool):,} queries (mean {np.mean(sizes) if sizes else 0:.1f} per query)")
    if not pool:
        raise DataError("no sampled query has two or more pooled documents: nothing to judge")
    write_pool(out, pool)
    return systems, pool


def _judge_plan(cfg: ZeloConfig, out: Path, pool: dict, qrels, audit_col, log):
    """The annotation config that judges the pool (in the audit's own folder) and its estimate."""
    from zelo_ray.annotate.estimate import estimate_annotate

    acfg = cfg.audit
    acfg2 = cfg.model_copy(deep=True)
    acfg2.annotate.output, acfg2.annotate.top_n = str(layout_at(out).annotate), max(len(v) for v in pool.values())
    acfg2.annotate.query_split = acfg2.annotate.max_queries = None
    kwargs = dict(qrels=qrels, candidates=str(out / "pool.parquet"), collection=audit_col)
    est = estimate_annotate(acfg2, **kwargs)
    log(f"[3/5] judge: {est['calls']:,} calls to ask ({est['reused']:,} answered before), estimated cost "
        f"≤ ${est['usd']:.2f}" + (f" (cap ${acfg.max_usd:.2f})" if acfg.max_usd is not None else ""))
    return acfg2, kwargs, est


def _score_step(cfg: ZeloConfig, acfg2: ZeloConfig, col, sample, systems, out: Path, log):
    """Grades from the pool's zELO scores; every system scored on them; each system's failures."""
    from zelo_ray.eval.audit import find_failures, score_systems
    from zelo_ray.eval.labelfree import graded_qrels

    acfg = cfg.audit
    z = pq.read_table(layout(acfg2).zelo)
    graded = graded_qrels(z, shares=tuple(acfg.grades))
    judged = [q.query_id for q in sample if any(g > 0 for g in graded.get(q.query_id, {}).values())]
    scores = score_systems(graded, systems.runs, judged, k=acfg.pool_depth, n_boot=acfg.bootstrap,
                           confidence=acfg.confidence, seed=acfg.seed)
    failures = find_failures(_best_documents(z), systems.runs, fail_rank=acfg.fail_rank)
    ftable = _failures_table(failures, z, systems.runs, {q.query_id: q.text for q in sample}, col)
    pq.write_table(ftable, out / "failures.parquet")
    return judged, scores, failures, ftable


def _log_scores(acfg, judged, ann: dict, scores: dict, failures, systems, log) -> None:
    log(f"[4/5] scores on {len(judged):,} queries with a zELO-relevant document "
        f"({ann['judge_calls']:,} judge calls, {ann['missing_votes']:,} missing votes):")
    width = max(len(s) for s in systems.runs) + 2
    for s, m in scores["systems"].items():
        nd, rc = m["ndcg@10"], m[f"recall@{acfg.pool_depth}"]
        nfail = sum(1 for f in failures if f["system"] == s)
        log(f"      {s:<{width}} nDCG@10 {nd['mean']:.3f} [{nd['ci_low']:.3f}, {nd['ci_high']:.3f}]  "
            f"Recall@{acfg.pool_depth} {rc['mean']:.3f}  failing queries {nfail:,}")


def _write_step(out: Path, result: dict, scores: dict, acfg, sample, n_failing: int, failed, errors, log) -> None:
    """audit.json, one line of the history, and the report."""
    from zelo_ray.workflows.report import write_report

    (out / "audit.json").write_text(json.dumps(result, indent=1) + "\n")
    history = _append_history(out / "history.jsonl", {
        "label": result["label"], "time": result["time"], "queries": result["judged_queries"], "sample": len(sample),
        "systems": {s: {"ndcg@10": m["ndcg@10"], f"recall@{acfg.pool_depth}": m[f"recall@{acfg.pool_depth}"],
                        "failures": result["failures"][s]} for s, m in scores["systems"].items()}})
    report = write_report(out)
    log(f"[5/5] {n_failing:,} failing (system, query) pairs → {out / 'failures.parquet'}; history: "
        f"{len(history)} audit(s) in {out / 'history.jsonl'}"
        + (f"; {failed.num_rows:,} bad records in {errors.path}" if failed.num_rows else ""))
    log(f"report: {report}")


def add_audit_arguments(p) -> None:
    p.add_argument("--queries", help="query log or query file: JSONL, Parquet or TSV (default: the collection's queries)")
    p.add_argument("--sample", type=int, help="draw N queries (sets audit.sample)")
    p.add_argument("--stratify-by", help="stratify the sample by this field of the log (sets audit.stratify_by)")
    p.add_argument("--run", action="append", default=[], metavar="NAME=FILE", help="a system's TREC run (repeatable)")
    p.add_argument("--candidates", help="a `zelo retrieve` candidates set: adds its bm25, dense and hybrid")
    p.add_argument("--retrieval", action="store_true", help="run our own retrieval on the sample (the "
                   "collection's indexes, built if missing): adds bm25, dense and hybrid")
    p.add_argument("--endpoint", action="append", default=[], metavar="NAME=URL",
                   help="a live rerank endpoint (…/v2/rerank Cohere-style, …/rerank TEI) reordering "
                   "audit.rerank_over's results (repeatable)")
    p.add_argument("--label", help="this audit's name in the history (default: the date and time)")
    p.add_argument("--out", help="audit directory (sets audit.output; default <workdir>/audit)")
    p.add_argument("--dry-run", action="store_true", help="sample, pool and price the judge calls, ask none")


def cmd_audit(args, cfg: ZeloConfig, sync) -> int:
    for flag, fieldname in (("sample", "sample"), ("stratify_by", "stratify_by"), ("out", "output")):
        if getattr(args, flag) is not None:
            setattr(cfg.audit, fieldname, getattr(args, flag))
    result = run_audit(cfg, queries=args.queries, runs=_named(args.run, "--run"), candidates=args.candidates,
                       endpoints=_named(args.endpoint, "--endpoint"), label=args.label, dry_run=args.dry_run,
                       retrieval=args.retrieval,
                       log=lambda m: print(m, file=__import__("sys").stderr))
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0
