"""Prepare a collection once (BEIR folder or ``ir_datasets`` id → Parquet) and open it.

Example::

    >>> from zelo_ray.data.collection import prepare
    >>> col = prepare("cranfield", "runs/cranfield/data")       # doctest: +SKIP
    >>> col.n_docs, col.splits                                   # doctest: +SKIP
    (1400, ['test'])

Conversion streams: the corpus is read one line at a time and written in row groups, so only
the id → line map (for duplicate detection) grows with the corpus. Output is written to a
temporary directory and renamed, so an interrupted conversion leaves nothing half-written; a
manifest fingerprints the source and a matching re-run returns at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from zelo_ray.data import beir, irds
from zelo_ray.data.schema import CORPUS, QRELS, QUERIES, DataError

__all__ = ["Collection", "DataSource", "open_collection", "prepare", "resolve_source"]

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1
_MAX_REPORTED = 5


@dataclass(frozen=True)
class DataSource:
    """Where a collection comes from: a BEIR folder or an ``ir_datasets`` id."""

    kind: str  # "beir" | "irds"
    location: str
    name: str

    def fingerprint(self) -> dict:
        if self.kind == "irds":
            ir_datasets = irds.import_ir_datasets()
            return {"irds": self.location, "version": ir_datasets.__version__}
        folder = Path(self.location)
        files = [beir.corpus_path(folder), folder / "queries.jsonl", *beir.qrels_splits(folder).values()]
        return {str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
                for p in files if p.exists()}


def _search_path() -> list[Path]:
    env = os.environ.get("ZELO_DATASETS")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    repo = Path(__file__).resolve().parents[2]
    paths = [repo.parent / "shared" / "datasets", Path.cwd().resolve().parent / "shared" / "datasets"]
    return list(dict.fromkeys(paths))


def resolve_source(spec: str) -> DataSource:
    """``irds:ID`` | a BEIR folder path | a bare name found under ``$ZELO_DATASETS``
    (default ``../shared/datasets``) | otherwise an ``ir_datasets`` id."""
    if not spec or not spec.strip():
        raise DataError("dataset: empty name")
    if spec.startswith("irds:"):
        return DataSource("irds", spec[5:], spec[5:].replace("/", "-"))
    path = Path(spec).expanduser()
    if path.is_dir():
        return DataSource("beir", str(path.resolve()), path.resolve().name)
    if os.sep not in spec:
        for base in _search_path():
            if (base / spec).is_dir():
                return DataSource("beir", str((base / spec).resolve()), spec)
        ir_datasets = irds.import_ir_datasets()
        if spec in ir_datasets.registry:
            return DataSource("irds", spec, spec.replace("/", "-"))
    raise DataError(f"dataset {spec!r}: not a BEIR folder, not under {[str(p) for p in _search_path()]} "
                    "($ZELO_DATASETS), and not an ir_datasets id")


@dataclass
class Collection:
    """A prepared collection on disk (see :mod:`zelo_ray.data.schema`)."""

    root: Path
    manifest: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.parquet"

    @property
    def queries_path(self) -> Path:
        return self.root / "queries.parquet"

    @property
    def n_docs(self) -> int:
        return self.manifest["counts"]["docs"]

    @property
    def splits(self) -> list[str]:
        return sorted(self.manifest["counts"]["qrels"])

    def qrels_path(self, split: str) -> Path:
        if split not in self.manifest["counts"]["qrels"]:
            raise DataError(f"{self.root}: no qrels split {split!r}; available: {self.splits or 'none'}")
        return self.root / "qrels" / f"{split}.parquet"

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        """``{query_id: {doc_id: relevance}}`` (the pytrec_eval shape)."""
        t = pq.read_table(self.qrels_path(split))
        out: dict[str, dict[str, int]] = {}
        for q, d, r in zip(*(t.column(c).to_pylist() for c in ("query_id", "doc_id", "relevance"))):
            out.setdefault(q, {})[d] = r
        return out

    def doc_ids(self) -> pa.Array:
        """All document ids in ``row`` order (the only per-document state indexes keep)."""
        return pq.read_table(self.corpus_path, columns=["doc_id"]).column(0).combine_chunks()

    def queries(self) -> pa.Table:
        return pq.read_table(self.queries_path)


def open_collection(root: str | Path) -> Collection:
    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except FileNotFoundError:
        raise DataError(f"{root}: not a prepared collection (no manifest.json); run `zelo index` "
                        "or zelo_ray.data.prepare first") from None
    return Collection(root, manifest)


class _BatchWriter:
    def __init__(self, path: Path, schema: pa.Schema, rows: int):
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.schema, self.rows, self.cols = schema, rows, {n: [] for n in schema.names}

    def add(self, *values) -> None:
        for name, v in zip(self.schema.names, values):
            self.cols[name].append(v)
        if len(self.cols[self.schema.names[0]]) >= self.rows:
            self.flush()

    def flush(self) -> None:
        if self.cols[self.schema.names[0]]:
            self.writer.write_table(pa.table(self.cols, schema=self.schema))
            self.cols = {n: [] for n in self.schema.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _ids_examples(items: Iterable[str]) -> str:
    items = list(items)
    more = f" (+{len(items) - _MAX_REPORTED} more)" if len(items) > _MAX_REPORTED else ""
    return ", ".join(repr(x) for x in items[:_MAX_REPORTED]) + more


def _write_records(records: Iterator[tuple[str, str, str, str]], path: Path, *, corpus: bool,
                   rows: int, normalise: bool) -> tuple[dict[str, int], list[str]]:
    """Write corpus or queries; returns (id → row, ids of empty records)."""
    seen: dict[str, tuple[int, str]] = {}
    empty: list[str] = []
    w = _BatchWriter(path, CORPUS if corpus else QUERIES, rows)
    try:
        for where, rid, title, text in records:
            if rid in seen:
                kind = "document" if corpus else "query"
                raise DataError(f"{where}: duplicate {kind} id {rid!r} (first at {seen[rid][1]})")
            if normalise:
                title, text = " ".join(title.split()), " ".join(text.split())
            is_empty = not (title.strip() or text.strip())
            if is_empty:
                empty.append(rid)
            row = len(seen)
            seen[rid] = (row, where)
            if corpus:
                w.add(row, rid, title, text, is_empty)
            else:
                w.add(rid, text, is_empty)
    finally:
        w.close()
    return {k: v[0] for k, v in seen.items()}, empty


def _write_qrels(records: Iterator[tuple[str, str, str, int]], path: Path, docs: dict, queries: dict,
                 split: str) -> dict:
    w = _BatchWriter(path, QRELS, 65536)
    unknown_docs, unknown_queries, n, pos = set(), set(), 0, 0
    try:
        for _where, qid, did, rel in records:
            n += 1
            pos += rel > 0
            if did not in docs:
                unknown_docs.add(did)
            if qid not in queries:
                unknown_queries.add(qid)
            w.add(qid, did, rel)
    finally:
        w.close()
    warnings = []
    if unknown_docs:
        warnings.append(f"qrels/{split}: {len(unknown_docs)} unknown document ids "
                        f"({_ids_examples(sorted(unknown_docs))}); kept, they count as unretrievable")
    if unknown_queries:
        warnings.append(f"qrels/{split}: {len(unknown_queries)} unknown query ids "
                        f"({_ids_examples(sorted(unknown_queries))}); they cannot be evaluated")
    return {"rows": n, "relevant": int(pos), "warnings": warnings}


def prepare(spec: str | DataSource, out_dir: str | Path, *, force: bool = False,
            rows_per_group: int = 16384, default_split: str = "test") -> Collection:
    """Convert a collection to Parquet under ``out_dir`` (once; re-runs reuse it)."""
    src = spec if isinstance(spec, DataSource) else resolve_source(spec)
    out = Path(out_dir)
    fingerprint = {"format": _FORMAT_VERSION, "source": src.kind, "location": src.location,
                   "files": src.fingerprint()}
    if not force and (out / "manifest.json").exists():
        col = open_collection(out)
        if col.manifest.get("fingerprint") == fingerprint:
            return col
        log.info("%s: source changed, converting again", out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "qrels").mkdir(parents=True)
    if src.kind == "beir":
        folder = Path(src.location)
        docs_it = beir.read_jsonl_records(beir.corpus_path(folder), kind="corpus")
        queries_file = folder / "queries.jsonl"
        if not queries_file.exists():
            raise DataError(f"{folder}: no queries.jsonl")
        queries_it = beir.read_jsonl_records(queries_file, kind="queries")
        qrels_its = {s: beir.read_qrels_tsv(p) for s, p in beir.qrels_splits(folder).items()}
    else:
        ds = irds.load(src.location)
        docs_it, queries_it = irds.read_docs(ds, src.location), irds.read_queries(ds, src.location)
        qrels_its = {default_split: irds.read_qrels(ds, src.location)} if ds.has_qrels() else {}
    normalise = src.kind == "irds"
    docs, empty_docs = _write_records(docs_it, tmp / "corpus.parquet", corpus=True,
                                      rows=rows_per_group, normalise=normalise)
    queries, empty_queries = _write_records(queries_it, tmp / "queries.parquet", corpus=False,
                                            rows=rows_per_group, normalise=normalise)
    warnings = []
    if empty_docs:
        warnings.append(f"{len(empty_docs)} empty documents kept and flagged: {_ids_examples(empty_docs)}")
    if empty_queries:
        warnings.append(f"{len(empty_queries)} empty queries kept and flagged: {_ids_examples(empty_queries)}")
    qrels_counts = {}
    for split, it in qrels_its.items():
        info = _write_qrels(it, tmp / "qrels" / f"{split}.parquet", docs, queries, split)
        warnings += info.pop("warnings")
        qrels_counts[split] = info
    for w in warnings:
        log.warning("%s: %s", src.name, w)
    manifest = {"name": src.name, "fingerprint": fingerprint, "warnings": warnings,
                "counts": {"docs": len(docs), "empty_docs": len(empty_docs), "queries": len(queries),
                           "qrels": qrels_counts}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return Collection(out, manifest)
