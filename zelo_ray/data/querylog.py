"""Query logs and query samples for `zelo audit`.

A query log is JSONL (one object per line), Parquet, or TSV (``id<TAB>text``, or one query per
line). The text is the ``text`` or ``query`` field; the id is ``query_id``, ``qid``, ``id`` or
``_id`` when present, otherwise derived from the text, so the same text logged a thousand times is
one query (its ``count`` is 1000). Every other field is kept for stratified sampling. A bad line
is returned as a problem (``file:line``, why) and the rest is read.

    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
    >>> _ = p.write_text("\\n".join(json.dumps({"query": t, "day": d}) for t, d in
    ...                  [("bm25", "mon"), ("elo", "mon"), ("bm25", "tue"), ("rrf", "tue")]))
    >>> log = read_query_log(p)
    >>> sorted(q.text for q in log.queries), [q.count for q in log.queries if q.text == "bm25"]
    (['bm25', 'elo', 'rrf'], [2])
    >>> len(sample_queries(log.queries, n=2, stratify_by="day", seed=0))
    2
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["LoggedQuery", "QueryLog", "read_query_log", "sample_queries"]

_TEXT = ("text", "query")
_ID = ("query_id", "qid", "id", "_id")


@dataclass
class LoggedQuery:
    query_id: str
    text: str
    count: int = 1
    fields: dict = field(default_factory=dict)
    """The first logged occurrence's other fields."""


@dataclass
class QueryLog:
    queries: list[LoggedQuery]
    problems: list[tuple[str, str]] = field(default_factory=list)
    lines: int = 0


def _derived_id(text: str) -> str:
    return "q-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _records(path: Path):
    """(line number, record dict or an error message) for each record of the file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet" or path.is_dir():
        import pyarrow.parquet as pq

        for i, rec in enumerate(pq.read_table(path).to_pylist(), 1):
            yield i, rec
        return
    with path.open("rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield i, f"not UTF-8 ({exc.reason} at byte {exc.start})"
                continue
            if not line.strip():
                continue
            if suffix in (".jsonl", ".ndjson", ".json"):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield i, f"not JSON ({exc.msg} at column {exc.colno})"
                    continue
                yield i, rec if isinstance(rec, dict) else f"expected a JSON object, got {type(rec).__name__}"
            else:
                qid, tab, text = line.partition("\t")
                yield i, {"query_id": qid, "text": text} if tab else {"text": line}


def read_query_log(path: str | Path) -> QueryLog:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such query log")
    by_id: dict[str, LoggedQuery] = {}
    problems: list[tuple[str, str]] = []
    n = 0
    for n, rec in _records(path):
        where = f"{path.name}:{n}"
        if isinstance(rec, str):
            problems.append((where, rec))
            continue
        text = next((rec[k] for k in _TEXT if k in rec), None)
        if not isinstance(text, str) or not text.strip():
            problems.append((where, f"no query text (a non-empty string in one of {list(_TEXT)})"))
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problems.append((where, "query text is not valid Unicode (a lone surrogate)"))
            continue
        raw_id = next((rec[k] for k in _ID if rec.get(k) not in (None, "")), None)
        qid = str(raw_id) if raw_id is not None else _derived_id(text)
        try:
            qid.encode("utf-8")
        except UnicodeEncodeError:
            problems.append((where, "query id is not valid Unicode (a lone surrogate)"))
            continue
        if len(qid.split()) != 1 or qid.strip() != qid:
            problems.append((where, f"query id {qid!r} holds whitespace (TREC run files cannot name it)"))
            continue
        if qid in by_id:
            if by_id[qid].text != text:
                problems.append((where, f"query id {qid!r} was logged earlier with another text (first kept)"))
            else:
                by_id[qid].count += 1
            continue
        others = {k: v for k, v in rec.items() if k not in _TEXT and k not in _ID}
        by_id[qid] = LoggedQuery(qid, text, 1, others)
    return QueryLog(list(by_id.values()), problems, n)


def _as_time(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    if isinstance(v, datetime):
        return v.timestamp()
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def strata_of(queries: list[LoggedQuery], by: str, n_windows: int) -> list[str]:
    """Each query's stratum: its value of ``by``, or its time window when every value is a time."""
    values = [q.fields.get(by) for q in queries]
    present = [v for v in values if v is not None]
    times = [_as_time(v) for v in present]
    if present and all(t is not None for t in times):
        lo, hi = min(times), max(times)
        width = (hi - lo) / n_windows or 1.0
        out = []
        for v in values:
            if v is None:
                out.append("(missing)")
                continue
            k = min(int((_as_time(v) - lo) / width), n_windows - 1)
            out.append(f"window {k + 1}/{n_windows}")
        return out
    return ["(missing)" if v is None else str(v) for v in values]


def sample_queries(queries: list[LoggedQuery], *, n: int | None, stratify_by: str | None = None,
                   strata: int = 4, seed: int = 0) -> list[LoggedQuery]:
    """``n`` queries drawn without replacement (all when ``n`` is None or too large), sorted by id.
    With ``stratify_by``, each stratum gets its proportional share (largest remainders), at
    least one query while ``n`` allows."""
    if stratify_by is not None and queries and all(stratify_by not in q.fields for q in queries):
        raise ValueError(f"stratify_by={stratify_by!r}: no logged query has that field")
    if n is None or n >= len(queries):
        return sorted(queries, key=lambda q: q.query_id)
    rng = np.random.default_rng(seed)
    order = sorted(queries, key=lambda q: q.query_id)  # the log's order must not change the sample
    if stratify_by is None:
        idx = rng.choice(len(order), size=n, replace=False)
        return sorted((order[i] for i in idx), key=lambda q: q.query_id)
    labels = strata_of(order, stratify_by, strata)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(labels):
        groups.setdefault(s, []).append(i)
    names = sorted(groups)
    sizes = np.array([len(groups[s]) for s in names], float)
    quota = sizes / sizes.sum() * n
    take = np.floor(quota).astype(int)
    if n >= len(names):
        take = np.maximum(take, 1)
    floor = 1 if n >= len(names) else 0
    while take.sum() > n:  # the minimum of one pushed us over: trim the strata furthest above quota
        take[np.argmax(np.where(take > floor, take - quota, -np.inf))] -= 1
    rest = quota - take
    for k in np.argsort(-rest, kind="stable"):
        if take.sum() >= n:
            break
        if take[k] < sizes[k]:
            take[k] += 1
    picked = []
    for s, t in zip(names, take):
        members = groups[s]
        picked += [order[i] for i in rng.choice(members, size=min(int(t), len(members)), replace=False)]
    return sorted(picked, key=lambda q: q.query_id)
