"""TREC run files, the format every IR toolkit writes: one line per retrieved document,
``query_id Q0 doc_id rank score tag``, whitespace-separated.

Documents are ordered by score (highest first) as trec_eval does; the rank column only breaks
ties. A bad line never stops the read: it is returned as a problem naming the file and line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "bm25.trec"
    >>> write_run({"q1": ["d3", "d1"]}, p, tag="bm25")
    >>> p.read_text().splitlines()[0]
    'q1 Q0 d3 1 2 bm25'
    >>> read_run(p).run
    {'q1': ['d3', 'd1']}
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunFile", "read_run", "write_run"]


@dataclass
class RunFile:
    """A parsed run: ``run[query_id]`` = doc ids best first; ``problems`` = (``file:line``, why)."""

    run: dict[str, list[str]]
    problems: list[tuple[str, str]] = field(default_factory=list)
    lines: int = 0
    skipped_queries: int = 0
    """Queries in the file that were not asked for (not in the sample)."""


def read_run(path: str | Path, *, queries: Container[str] | None = None,
             doc_ids: Container[str] | None = None) -> RunFile:
    """Parse a TREC run. ``queries``: keep only these (others are counted, not errors);
    ``doc_ids``: documents outside this set are problems (they cannot be judged: no text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such run file")
    rows: dict[str, list[tuple[float, int, int, str]]] = {}
    seen: dict[str, set[str]] = {}
    problems: list[tuple[str, str]] = []
    skipped: set[str] = set()
    n = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"{path.name}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append((where, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 6:
                problems.append((where, f"expected 6 fields 'query_id Q0 doc_id rank score tag', got {len(parts)}"))
                continue
            q, _, d, rank_s, score_s, _ = parts
            try:
                score, rank = float(score_s), int(float(rank_s))
            except (ValueError, OverflowError):
                problems.append((where, f"rank {rank_s!r} or score {score_s!r} is not a number"))
                continue
            if score != score:
                problems.append((where, "score is NaN"))
                continue
            if queries is not None and q not in queries:
                skipped.add(q)
                continue
            if doc_ids is not None and d not in doc_ids:
                problems.append((where, f"document {d!r} is not in the corpus"))
                continue
            if d in seen.setdefault(q, set()):
                problems.append((where, f"document {d!r} repeated for query {q!r} (first kept)"))
                continue
            seen[q].add(d)
            rows.setdefault(q, []).append((-score, rank, n, d))
    run = {q: [d for *_, d in sorted(r)] for q, r in rows.items()}
    return RunFile(run, problems, n, len(skipped))


def write_run(run: Mapping[str, Sequence[str]], path: str | Path, *, tag: str = "zelo") -> None:
    """Write ``run[query_id]`` (best first) as a TREC run; scores count down from the list's length."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for q, docs in run.items():
            for i, d in enumerate(docs):
                if not q or not d or len(f"{q} {d}".split()) != 2:
                    raise ValueError(f"query {q!r} / document {d!r}: TREC ids cannot be empty or hold whitespace")
                f.write(f"{q} Q0 {d} {i + 1} {len(docs) - i} {tag}\n")
    tmp.replace(path)
