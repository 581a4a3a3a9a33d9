"""Streaming readers for the BEIR folder layout, with errors that name the file and line.

Layout: ``corpus.jsonl`` or ``corpus.jsonl.gz`` (``_id``, ``title``, ``text``),
``queries.jsonl`` (``_id``, ``text``), ``qrels/<split>.tsv`` (header ``query-id corpus-id
score``; TREC's four-column ``qid 0 docid rel`` is accepted too). Readers yield one record at
a time, so a corpus of millions of documents never sits in memory.

Example::

    >>> from zelo_ray.data.beir import read_jsonl_records
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "corpus.jsonl"
    >>> _ = p.write_text('{"_id": "d1", "title": "T", "text": "body"}\\n')
    >>> [r[1:] for r in read_jsonl_records(p, kind="corpus")]
    [('d1', 'T', 'body')]
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from zelo_ray.data.schema import DataError

__all__ = ["corpus_path", "qrels_splits", "read_jsonl_records", "read_qrels_tsv"]


def corpus_path(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).exists():
            return folder / name
    raise DataError(f"{folder}: no corpus.jsonl or corpus.jsonl.gz (expected the BEIR layout)")


def qrels_splits(folder: Path) -> dict[str, Path]:
    qdir = folder / "qrels"
    if not qdir.is_dir():
        return {}
    return {p.stem: p for p in sorted(qdir.glob("*.tsv"))}


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def _text_field(obj: dict, key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def read_jsonl_records(path: Path, *, kind: str) -> Iterator[tuple[str, str, str, str]]:
    """Yield ``(where, id, title, text)`` per line of a corpus or queries JSONL file.

    ``where`` is ``"path:line"`` for later messages (duplicates). Blank lines are skipped;
    malformed JSON, a non-object line, a missing or empty ``_id`` and non-string fields raise
    :class:`DataError` naming the file and line. Queries have no title (``""``).
    """
    path = Path(path)
    try:
        fh = _open_text(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from exc
    with fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: malformed JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
                raw_id = obj.get("_id")
                if raw_id is None:
                    raise DataError(f"{where}: missing '_id'")
                if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
                    raise DataError(f"{where}: '_id' must be a string or integer, got {raw_id!r}")
                doc_id = str(raw_id).strip()
                if not doc_id:
                    raise DataError(f"{where}: empty '_id'")
                title = _text_field(obj, "title", where) if kind == "corpus" else ""
                yield where, doc_id, title, _text_field(obj, "text", where)
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
            raise DataError(f"{path}:{lineno + 1}: unreadable: {exc}") from None


def read_qrels_tsv(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """Yield ``(where, query_id, doc_id, relevance)`` from a BEIR (or TREC) qrels file."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            parts = line.split()
            if lineno == 1 and parts and parts[0].lower() in ("query-id", "query_id", "qid"):
                continue
            if len(parts) == 4:  # TREC: qid iteration docid rel
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise DataError(f"{where}: expected 3 columns (query-id, corpus-id, score), got {len(parts)}")
            try:
                rel = int(float(parts[2]))
            except ValueError:
                raise DataError(f"{where}: score {parts[2]!r} is not a number") from None
            yield where, parts[0], parts[1], rel
