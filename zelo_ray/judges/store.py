"""The durable vote store: a directory of Parquet parts, appended as answers arrive.

Each flush writes one part to a temporary name, fsyncs it and renames it into place, so a
part is either complete or absent: a ``kill -9`` loses at most the unflushed buffer (bounded
by ``flush_rows`` / ``flush_s``), never a part already written and never a half-written one.

Judge callers may also append their answers themselves, one call at a time, to per-process
logs in the same directory (:mod:`zelo_ray.judges.answer_log`); reading includes them.

Reading deduplicates by ``cache_key``: where a call was asked more than once (a missing vote
asked again on a re-run), the answered row wins over missing ones, then the latest row. Spend
(tokens, cost) is summed over every row ever written, because every attempt was paid for.

Example::

    >>> import tempfile, pyarrow as pa
    >>> from zelo_ray.judges.store import VoteStore
    >>> from zelo_ray.judges.caller import VOTE_SCHEMA
    >>> store = VoteStore(tempfile.mkdtemp(), flush_rows=1)
    >>> row = {f.name: [None] for f in VOTE_SCHEMA}
    >>> row.update(pair_id=[7], judge=["j"], swapped=[False], score=[-1.0], cache_key=[42])
    >>> store.append(pa.table(row, schema=VOTE_SCHEMA))
    >>> store.read().num_rows, store.answered_keys().tolist()
    (1, [42])
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.judges.caller import VOTE_SCHEMA

__all__ = ["VoteStore"]


class VoteStore:
    def __init__(self, path: str | Path, *, flush_rows: int = 2000, flush_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._seq = 0
        for stale in self.path.glob(".tmp-*"):
            stale.unlink(missing_ok=True)  # a part that was being written when the run died

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

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
        table = pa.concat_tables(self._buffer)
        # Names sort in write order within a process; the uuid keeps concurrent writers apart.
        name = f"part-{time.time_ns():020d}-{self._seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
        self._seq += 1
        tmp = self.path / f".tmp-{name}"
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / name)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._buffer, self._buffered = [], 0

    def read_all(self, columns: list[str] | None = None) -> pa.Table:
        """Every row ever written (for spend), in write order; unsealed answer logs last."""
        from zelo_ray.judges.answer_log import read_logs

        tables = [pq.read_table(p, columns=columns) for p in self.parts()]
        logs = read_logs(self.path, columns)
        if logs.num_rows:
            tables.append(logs)
        if not tables:
            schema = VOTE_SCHEMA if columns is None else pa.schema([VOTE_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(tables)

    def seal_logs(self) -> int:
        """Turn the answer logs of callers that have finished (or died) into parts."""
        from zelo_ray.judges.answer_log import seal_all

        return seal_all(self.path)

    def read(self) -> pa.Table:
        """One row per cache key: the latest answered row, else the latest missing one."""
        t = self.read_all()
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

    def answered_keys(self) -> np.ndarray:
        t = self.read_all(["cache_key", "score"])
        return np.unique(t.filter(pc.is_valid(t["score"]))["cache_key"].to_numpy())

    def asked_keys(self) -> np.ndarray:
        return np.unique(self.read_all(["cache_key"])["cache_key"].to_numpy())
