"""The inputs of `zelo audit`: the query sample, the systems' rankings, the judged pool, and the
small collection the judging stage reads (the sample's queries over the user's corpus).

Bad records (a query log line without text, a run line with five fields, a document the corpus
does not have, a query a rerank endpoint could not answer) go to the audit's errors table with
the file and line or the id, and the audit goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.data.querylog import LoggedQuery, read_query_log, sample_queries
from zelo_ray.data.schema import QRELS, QUERIES, DataError
from zelo_ray.data.trec import read_run
from zelo_ray.layout import layout_at
from zelo_ray.faults import ErrorLog

__all__ = ["AuditSystems", "doc_texts", "load_sample", "load_systems", "our_retrieval", "write_collection", "write_pool"]


def _record(errors: ErrorLog, problems: list[tuple[str, str]], error_type: str) -> None:
    if problems:
        errors.record_reported([p[0] for p in problems], [error_type] * len(problems),
                               [p[1] for p in problems], [None] * len(problems))


def load_sample(cfg: ZeloConfig, col, queries: str | None, errors: ErrorLog) -> tuple[list[LoggedQuery], dict]:
    """The audit's queries: a sample of the query log (or of the collection's queries)."""
    acfg = cfg.audit
    if queries:
        qlog = read_query_log(queries)
        _record(errors, qlog.problems, "BadQueryRecord")
        pool, source, bad = qlog.queries, str(queries), len(qlog.problems)
    else:
        t = col.queries()
        pool = [LoggedQuery(q, x) for q, x in zip(t["query_id"].to_pylist(), t["text"].to_pylist()) if x.strip()]
        source, bad = f"{col.root}/queries.parquet", 0
    if not pool:
        raise DataError(f"{source}: no usable queries ({bad} bad records, listed in {errors.parts_dir.parent})")
    try:
        sample = sample_queries(pool, n=acfg.sample, stratify_by=acfg.stratify_by, strata=acfg.strata, seed=acfg.seed)
    except ValueError as exc:
        raise DataError(f"{source}: {exc}") from None
    rule = ("all" if acfg.sample is None or acfg.sample >= len(pool) else
            f"{acfg.sample} at random" + (f", stratified by {acfg.stratify_by}" if acfg.stratify_by else ""))
    return sample, {"source": source, "distinct_queries": len(pool), "sampled": len(sample), "rule": rule,
                    "bad_records": bad, "logged": sum(q.count for q in pool)}


@dataclass
class AuditSystems:
    runs: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)


def doc_texts(col, ids) -> dict[str, str]:
    """Title + text of these documents (what judges and endpoints read)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    t = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"], filters=[("doc_id", "in", ids)])
    return {d: f"{ti}\n{x}" if ti else x for d, ti, x in zip(t["doc_id"].to_pylist(), t["title"].to_pylist(),
                                                             t["text"].to_pylist())}


def _add(systems: AuditSystems, name: str, run: dict, info: dict) -> None:
    if name in systems.runs:
        raise DataError(f"system name {name!r} is used twice (name each --run/--endpoint uniquely)")
    systems.runs[name], systems.info[name] = run, info


def load_systems(cfg: ZeloConfig, col, sample: list[LoggedQuery], *, runs: dict[str, str], candidates: str | None,
                 endpoints: dict[str, str], errors: ErrorLog, log, retrieval: str | None = None) -> AuditSystems:
    """Every system's ranking of the sampled queries: TREC runs, an existing candidates set,
    our own retrieval of the sample (``retrieval``: its candidates, :func:`our_retrieval`) — each
    adding BM25 / dense / hybrid — and rerank endpoints over one of them."""
    from zelo_ray.eval.evaluate import rankings_from_candidates

    acfg = cfg.audit
    ids = {q.query_id for q in sample}
    systems = AuditSystems()
    for name, path in runs.items():
        rf = read_run(path, queries=ids)
        _record(errors, rf.problems, "BadRunLine")
        if not rf.run:
            raise DataError(f"{path}: none of the {len(ids):,} sampled queries is in this run "
                            f"({rf.lines:,} lines, {len(rf.problems):,} bad); are its query ids the log's?")
        _add(systems, name, rf.run, {"source": str(path), "queries": len(rf.run), "bad_lines": len(rf.problems)})
    for source in (candidates, retrieval):
        if source:
            for name, run in rankings_from_candidates(source, sorted(ids), cfg.evaluate.depth).items():
                _add(systems, name, run, {"source": f"{source} ({name})", "queries": len(run), "bad_lines": 0})
    _drop_unknown_docs(col, systems, errors)
    if endpoints:
        over = acfg.rerank_over or ("hybrid" if "hybrid" in systems.runs else next(iter(systems.runs), None))
        if over not in systems.runs:
            raise DataError(f"audit.rerank_over={over!r}: rerank endpoints reorder another system's results; "
                            f"give that system as --run (systems: {sorted(systems.runs)})")
        base = systems.runs[over]
        texts = doc_texts(col, [d for q in ids for d in base.get(q, [])[:acfg.rerank_depth]])
        key = os.environ.get(acfg.endpoint_api_key_env) if acfg.endpoint_api_key_env else None
        if acfg.endpoint_api_key_env and not key:
            raise DataError(f"audit.endpoint_api_key_env={acfg.endpoint_api_key_env!r}: that environment variable is not set")
        for name, url in endpoints.items():
            from zelo_ray.eval.rerank_endpoint import rerank_with_endpoint

            log(f"      asking {url} to rerank {over}'s top-{acfg.rerank_depth} of {len(ids):,} queries")
            run, problems = rerank_with_endpoint(
                url, {q.query_id: q.text for q in sample}, base, texts.__getitem__, depth=acfg.rerank_depth,
                model=acfg.endpoint_model, api_key=key, concurrency=acfg.endpoint_concurrency,
                timeout_s=acfg.endpoint_timeout_s)
            _record(errors, [(f"{name}/{q}", e) for q, e in problems], "EndpointError")
            if problems:
                log(f"      {name}: {len(problems):,} queries got no answer (an empty ranking for this system; "
                    f"listed in the errors table): {problems[0][1][:160]}")
            _add(systems, name, run, {"source": url, "queries": len(run), "failed_queries": len(problems),
                                      "reranks": over})
    if not systems.runs:
        raise DataError("no systems to audit: give TREC runs (--run NAME=FILE), --candidates, --retrieval or --endpoint")
    return systems


def _drop_unknown_docs(col, systems: AuditSystems, errors: ErrorLog) -> None:
    """Documents the corpus does not have cannot be judged: dropped from the rankings, listed."""
    every = pa.array(sorted({d for run in systems.runs.values() for docs in run.values() for d in docs}), pa.string())
    if not len(every):
        return
    known = pq.read_table(col.corpus_path, columns=["doc_id"], filters=[("doc_id", "in", every.to_pylist())])
    unknown = set(every.filter(pc.invert(pc.is_in(every, value_set=known["doc_id"]))).to_pylist())
    if not unknown:
        return
    for name, run in systems.runs.items():
        bad = [(f"{name}/{q}/{d}", f"document {d!r} is not in the corpus (dropped from {name}'s ranking)")
               for q, docs in run.items() for d in docs if d in unknown]
        _record(errors, bad, "UnknownDocument")
        systems.info[name]["unknown_docs"] = len(bad)
        for q in run:
            run[q] = [d for d in run[q] if d not in unknown]


def _write_if_changed(table: pa.Table, path: Path) -> None:
    """Rewrite only on a change: the judging stage keys its resume on the files' mtimes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    if path.exists() and hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_collection(out: Path, col, sample: list[LoggedQuery], qrels: pa.Table | None):
    """``<out>/data``: a collection of the sampled queries over the user's corpus (linked, not
    copied), which the judging stage (and our own retrieval) read. Returns it."""
    from zelo_ray.data import open_collection

    data = layout_at(out).data
    (data / "qrels").mkdir(parents=True, exist_ok=True)
    link = data / "corpus.parquet"
    target = Path(col.corpus_path).resolve()
    if not link.is_symlink() or link.resolve() != target:
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    _write_if_changed(pa.table({"query_id": [q.query_id for q in sample], "text": [q.text for q in sample],
                                "empty": [False] * len(sample)}, schema=QUERIES), data / "queries.parquet")
    splits = {}
    if qrels is not None:
        ids = pa.array([q.query_id for q in sample], pa.string())
        sub = qrels.filter(pc.is_in(qrels["query_id"], value_set=ids)).cast(QRELS)
        _write_if_changed(sub, data / "qrels" / "audit.parquet")
        splits["audit"] = {"queries": len(set(sub["query_id"].to_pylist())), "pairs": sub.num_rows}
    manifest = {"name": f"{col.name}-audit", "counts": {"docs": col.n_docs, "queries": len(sample), "qrels": splits},
                "fingerprint": {"audit_of": str(col.root)}, "warnings": []}
    text = json.dumps(manifest, indent=1)
    if not (data / "manifest.json").exists() or (data / "manifest.json").read_text() != text:
        (data / "manifest.json").write_text(text)
    return open_collection(data)


def write_pool(out: Path, pool: dict[str, list[str]]) -> Path:
    """``<out>/pool.parquet``: the judged candidates (query_id, doc_id, rank in the fused pool)."""
    rows = [(q, d, r) for q, docs in pool.items() for r, d in enumerate(docs, 1)]
    path = out / "pool.parquet"
    _write_if_changed(pa.table({"query_id": pa.array([r[0] for r in rows], pa.string()),
                                "doc_id": pa.array([r[1] for r in rows], pa.string()),
                                "rank": pa.array([r[2] for r in rows], pa.int32())}), path)
    return path


def our_retrieval(cfg: ZeloConfig, out: Path, log) -> Path:
    """Our own BM25, dense and hybrid retrieval of the sampled queries (``<out>/data``) over the
    collection's indexes (built first if missing): ``<out>/retrieval.parquet``."""
    from zelo_ray.layout import layout
    from zelo_ray.retrieval.indexing import run_index
    from zelo_ray.retrieval.pipeline import run_retrieve

    run = layout(cfg)
    if not (run.bm25.exists() and ("://" in str(run.dense) or Path(run.dense).exists())):
        log(f"      building the collection's indexes first ({run.workdir / 'index'})")
    run_index(cfg, progress=False)
    mirror = cfg.model_copy(deep=True)
    mirror.data.workdir, mirror.data.output_uri = str(out), None
    mirror.index.uri = str(run.dense)
    mirror.retrieve.output = str(out / "retrieval.parquet")
    link = layout_at(out).index
    if not link.is_symlink() or link.resolve() != run.bm25.parent.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(run.bm25.parent.resolve(), target_is_directory=True)
    report = run_retrieve(mirror)
    if report["failed"]["failed"]:
        log(f"      our retrieval: {report['failed']['failed']:,} queries failed (listed in {report['failed']['errors']})")
    return out / "retrieval.parquet"
