"""The judging stage's output tables (pairs, pair outcomes, Elo, cross pairs), written bucket by
bucket under temporary names and renamed into place only when the whole run has finished, so a
killed run never leaves a table that looks complete."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Writers"]


class Writers:
    """The run's output tables, written bucket by bucket and renamed into place at the end."""

    def __init__(self, out: Path) -> None:
        self.out, self._w = out, {}

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self._w:
            self._w[name] = pq.ParquetWriter(self.out / f"{name}.parquet.tmp", table.schema)
        self._w[name].write_table(table)

    def close(self) -> None:
        for name, w in self._w.items():
            w.close()
            os.replace(self.out / f"{name}.parquet.tmp", self.out / f"{name}.parquet")
        self._w = {}

    def abort(self) -> None:
        for name, w in self._w.items():
            w.close()
            (self.out / f"{name}.parquet.tmp").unlink(missing_ok=True)
        self._w = {}
