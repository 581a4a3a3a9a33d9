"""The durable vote store: Parquet parts in one folder per query partition, appended as answers
arrive.

A vote belongs to partition ``hash(query_id) % partitions`` (256, fixed when the store is made
and recorded in ``layout.json``), so a run that works through its queries bucket by bucket reads
and rewrites only its buckets' partitions, whatever the size of the whole store.

Each write goes to a temporary name, is fsynced and renamed into place, so a part is either
complete or absent; a part damaged afterwards is found when the store is opened (its footer) or
read (its page checksums) and moved aside to ``quarantine/`` (:mod:`zelo_ray.judges.parts`): its
votes read as never asked, so the next run asks exactly them again.

Judge callers append their answers themselves, one call at a time, to
per-process logs (:mod:`zelo_ray.judges.answer_log`); :meth:`VoteStore.organize` seals them and
files their rows into partitions (reading includes logs and unfiled parts meanwhile).
:meth:`VoteStore.compact` merges a partition's parts into one, so resuming a long run opens a
few files per partition, not one per flush.

Reading deduplicates by ``cache_key``: where a call was asked more than once (a missing vote
asked again on a re-run), the answered row wins over missing ones, then the latest row. Spend
(tokens, cost) is summed over every row ever written, because every attempt was paid for.

Example::

    >>> import tempfile, pyarrow as pa
    >>> from zelo_ray.judges.store import VoteStore
    >>> from zelo_ray.judges.base import VOTE_SCHEMA
    >>> store = VoteStore(tempfile.mkdtemp(), flush_rows=1)
    >>> row = {f.name: [None] for f in VOTE_SCHEMA}
    >>> row.update(pair_id=[7], query_id=["q1"], judge=["j"], swapped=[False], score=[-1.0], cache_key=[42])
    >>> store.append(pa.table(row, schema=VOTE_SCHEMA))
    >>> store.read().num_rows, store.answered_keys().tolist()
    (1, [42])
    >>> p = store.partition_of(pa.array(["q1"]))[0]
    >>> store.answered_keys([p]).tolist(), store.answered_keys([(p + 1) % 256]).tolist()
    ([42], [])
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.judges.base import VOTE_SCHEMA
from zelo_ray.judges.keys import text_hashes
from zelo_ray.judges.parts import DamagedPart, damage, quarantine, quarantined, read_part, write_part

__all__ = ["VoteStore", "partition_of"]

PARTITIONS = 256

log = logging.getLogger(__name__)


def partition_of(query_ids: pa.Array | pa.ChunkedArray, partitions: int = PARTITIONS) -> np.ndarray:
    """(n,) partition of each query id (null ids → 0)."""
    ids = pc.fill_null(pc.cast(query_ids, pa.string()), "")
    uniq = pc.unique(ids)
    part = (text_hashes(uniq.to_pylist()) % np.uint64(partitions)).astype(np.int64)
    return part[pc.index_in(ids, value_set=uniq).to_numpy(zero_copy_only=False)]


def _part_name(tag: str = "") -> str:
    # Names sort in write order within a process; the uuid keeps concurrent writers apart.
    return f"part-{time.time_ns():020d}{tag}-{uuid.uuid4().hex[:8]}.parquet"


def _write_part(directory: Path, table: pa.Table, name: str | None = None) -> Path:
    return write_part(directory, table, name or _part_name())


class VoteStore:
    def __init__(self, path: str | Path, *, flush_rows: int = 2000, flush_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self.moved_aside: list[dict] = []
        """Parts this object found damaged and quarantined (every run's: :meth:`quarantined`)."""
        layout = self.path / "layout.json"
        if layout.exists():
            self.partitions = int(json.loads(layout.read_text())["partitions"])
        else:
            self.partitions = PARTITIONS
            tmp = layout.with_name(f".tmp-{uuid.uuid4().hex[:8]}-layout.json")
            tmp.write_text(json.dumps({"partitions": self.partitions}))
            os.replace(tmp, layout)

    # -- layout ----------------------------------------------------------------------------
    def partition_of(self, query_ids) -> np.ndarray:
        return partition_of(query_ids, self.partitions)

    def _dir(self, p: int) -> Path:
        return self.path / f"p{p:03d}"

    def _unfiled(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"), key=lambda p: p.name)

    def parts(self, partitions: Iterable[int] | None = None) -> list[Path]:
        """Parquet parts of ``partitions`` (None: every part, filed or not), in write order."""
        dirs = (sorted(self.path.glob("p[0-9][0-9][0-9]")) if partitions is None
                else [self._dir(int(p)) for p in partitions])
        found = [f for d in dirs for f in d.glob("part-*.parquet")]
        if partitions is None:
            found += self._unfiled()
        replaced = self._replaced(dirs)
        return sorted((f for f in found if f.name not in replaced), key=lambda f: f.name)

    def _replaced(self, dirs: list[Path]) -> set[str]:
        """Parts of ``dirs`` a finished compaction replaced but a crash left behind."""
        out: set[str] = set()
        for note in (n for d in dirs for n in d.glob("compact-*.json")):
            entry = json.loads(note.read_text())
            if (note.parent / entry["into"]).exists():
                out.update(entry["replaces"])
        return out

    # -- writing ---------------------------------------------------------------------------
    def append(self, votes: pa.Table) -> None:
        if votes.num_rows:
            self._buffer.append(votes.select(VOTE_SCHEMA.names).cast(VOTE_SCHEMA))
            self._buffered += votes.num_rows
        if self._buffered >= self.flush_rows or (
                self._buffered and time.monotonic() - self._last_flush >= self.flush_s):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffered:
            return
        self._file(pa.concat_tables(self._buffer))
        self._buffer, self._buffered = [], 0

    def _file(self, table: pa.Table) -> None:
        """Write ``table``'s rows into their partitions, one part per partition."""
        part = self.partition_of(table["query_id"])
        order = np.argsort(part, kind="stable")
        sorted_part = part[order]
        bounds = np.flatnonzero(np.r_[True, sorted_part[1:] != sorted_part[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            _write_part(self._dir(int(sorted_part[a])), table.take(pa.array(order[a:b])))

    def organize(self) -> int:
        """Seal finished callers' answer logs and file every unfiled part into its partitions
        (call it when no caller of this store is running). Returns how many rows were filed."""
        from zelo_ray.judges.answer_log import seal_all

        for stale in self.path.rglob(".tmp-*"):
            stale.unlink(missing_ok=True)  # a part that was being written when a run died
        seal_all(self.path)
        self.check()
        rows = 0
        for f in self._unfiled():
            table = self._read(f)
            if table is not None and table.num_rows:
                self._file(table.select(VOTE_SCHEMA.names).cast(VOTE_SCHEMA))
                rows += table.num_rows
            f.unlink()
        return rows

    def compact(self, partitions: Iterable[int]) -> int:
        """Merge each partition's parts into one (every row kept: spend counts them all). A crash
        midway leaves a note so that the merged rows are never read twice. Returns parts removed."""
        removed = 0
        for p in partitions:
            d = self._dir(int(p))
            parts = self.parts([p])
            if len(parts) < 2:
                continue
            tables = [t for t in (self._read(f) for f in parts) if t is not None]
            if not tables:
                continue
            table = pa.concat_tables(tables)
            into = _part_name("-c")
            note = d / f"compact-{into}.json"
            note.write_text(json.dumps({"into": into, "replaces": [f.name for f in parts]}))
            _write_part(d, table, into)
            for f in parts:
                f.unlink(missing_ok=True)
            note.unlink()
            removed += len(parts) - 1
        return removed

    # -- integrity -------------------------------------------------------------------------
    def check(self, partitions: Iterable[int] | None = None, *, pages: bool = False) -> list[dict]:
        """Open every part of ``partitions`` (None: all) — its footer, or with ``pages`` every
        page against its checksum — and move the damaged ones aside. Returns their notes."""
        before = len(self.moved_aside)
        for f in self.parts(partitions):
            if pages:
                self._read(f)
            elif (reason := damage(f)) is not None:
                self._quarantine(f, reason)
        return self.moved_aside[before:]

    def _read(self, f: Path, columns: list[str] | None = None) -> pa.Table | None:
        """A part's rows, or None when it is damaged (it is moved aside) or gone."""
        try:
            return read_part(f, columns)
        except FileNotFoundError:
            return None  # compacted or moved aside by another reader meanwhile
        except DamagedPart as e:
            self._quarantine(f, e.reason)
            return None

    def _quarantine(self, f: Path, reason: str) -> None:
        note = quarantine(self.path, f, reason)
        if note is not None:
            log.warning("damaged vote part %s moved to %s (%s); its votes will be asked again",
                        f, note["moved_to"], reason)
            self.moved_aside.append(note)

    def quarantined(self) -> list[dict]:
        """Every part of this store found damaged and moved aside, by any run (oldest first)."""
        return quarantined(self.path)

    # -- reading ---------------------------------------------------------------------------
    def read_all(self, columns: list[str] | None = None, partitions: Iterable[int] | None = None) -> pa.Table:
        """Every row ever written (for spend) of ``partitions`` (None: all), in write order;
        unfiled parts and answer logs last."""
        from zelo_ray.judges.answer_log import read_logs

        partitions = None if partitions is None else sorted({int(p) for p in partitions})
        need = None if columns is None else list(dict.fromkeys([*columns, "query_id"]))
        tables = [self._read(f, columns) for f in self.parts(partitions)
                  if partitions is None or f.parent != self.path]
        tables = [t for t in tables if t is not None]
        loose = [self._read(f, need) for f in self._unfiled()] if partitions is not None else []
        logs = read_logs(self.path, need if partitions is not None else columns)
        for t in [*(t for t in loose if t is not None), logs]:
            if partitions is not None and t.num_rows:
                keep = np.isin(self.partition_of(t["query_id"]), partitions)
                t = t.filter(pa.array(keep))
                t = t.select(columns) if columns else t
            if t.num_rows:
                tables.append(t)
        if not tables:
            schema = VOTE_SCHEMA if columns is None else pa.schema([VOTE_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(tables)

    def read(self, partitions: Iterable[int] | None = None) -> pa.Table:
        """One row per cache key: the latest answered row, else the latest missing one."""
        t = self.read_all(partitions=partitions)
        if t.num_rows == 0:
            return t
        order = np.arange(t.num_rows)
        answered = t["score"].is_valid().to_numpy(zero_copy_only=False)
        keys = t["cache_key"].to_numpy()
        # Sort by key, then answered first, then latest first; keep the first of each key.
        idx = np.lexsort((-order, ~answered, keys))
        first = np.r_[True, keys[idx][1:] != keys[idx][:-1]]
        keep = np.sort(idx[first])
        return t.take(pa.array(keep))

    def answered_keys(self, partitions: Iterable[int] | None = None) -> np.ndarray:
        t = self.read_all(["cache_key", "score"], partitions)
        return np.unique(t.filter(pc.is_valid(t["score"]))["cache_key"].to_numpy())

    def asked_keys(self, partitions: Iterable[int] | None = None) -> np.ndarray:
        return np.unique(self.read_all(["cache_key"], partitions)["cache_key"].to_numpy())
