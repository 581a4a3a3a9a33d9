"""Per-process answer logs: each judge caller appends every answer to its own file the moment it
arrives, so a ``kill -9`` of the run loses no answer already received — only the calls still in
flight are asked (and paid for) again.

A log is an Arrow IPC stream (``log-*.arrows``) in the vote store's directory. Every write goes
to the operating system at once (a killed process cannot lose it; ``fsync`` at most every
second guards against a machine crash). A log cut short by a kill is read up to its last whole
record batch. :func:`seal` turns a finished or orphaned log into an ordinary Parquet part of the
store (atomically: the part is named after the log, and a log whose part exists is not read).

Example::

    >>> import tempfile, pyarrow as pa
    >>> from zelo_ray.judges.base import VOTE_SCHEMA
    >>> d = tempfile.mkdtemp()
    >>> log = AnswerLog(d)
    >>> row = {f.name: [None] for f in VOTE_SCHEMA}
    >>> row.update(pair_id=[7], judge=["j"], swapped=[False], score=[-1.0], cache_key=[42])
    >>> log.write(pa.table(row, schema=VOTE_SCHEMA))
    >>> read_logs(d).num_rows              # readable before the log is closed
    1
    >>> log.close(); read_logs(d).num_rows  # sealed into a Parquet part
    0
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pyarrow as pa

from zelo_ray.judges.base import VOTE_SCHEMA
from zelo_ray.judges.parts import write_part

__all__ = ["AnswerLog", "read_log", "read_logs", "seal", "seal_all"]


def _schema():
    return VOTE_SCHEMA


def _part_for(log: Path) -> Path:
    return log.with_name(f"part-{log.stem}.parquet")


class AnswerLog:
    """One process's append-only log of vote rows in ``directory``."""

    def __init__(self, directory: str | Path, *, fsync_every_s: float = 1.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"log-{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.arrows"
        self.path = self.dir / name
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, _schema())
        self.fsync_every_s = fsync_every_s
        self._synced = time.monotonic()
        self.rows = 0

    def write(self, votes: pa.Table) -> None:
        """Append ``votes``; on return they survive a kill of this process."""
        if votes.num_rows == 0:
            return
        self._writer.write_table(votes.select(_schema().names).cast(_schema()))
        self._sink.flush()
        self.rows += votes.num_rows
        if time.monotonic() - self._synced >= self.fsync_every_s:
            self.sync()

    def sync(self) -> None:
        self._synced = time.monotonic()
        os.fsync(self._sink.fileno())

    def close(self) -> None:
        """Finish the log and seal it into a Parquet part."""
        if self._sink.closed:
            return
        self._writer.close()
        self.sync()
        self._sink.close()
        seal(self.path)


def read_log(path: str | Path) -> pa.Table:
    """Every whole record batch of a log (a tail cut by a kill is dropped)."""
    batches = []
    try:
        with pa.OSFile(str(path)) as f:
            reader = pa.ipc.open_stream(f)
            for batch in reader:
                batches.append(batch)
    except (pa.ArrowInvalid, OSError, EOFError):
        pass  # an empty file, or a message cut short: keep what came before
    return pa.Table.from_batches(batches, schema=_schema())


def _logs(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.glob("log-*.arrows")) if not _part_for(p).exists()]


def read_logs(directory: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The rows of every log in ``directory`` that is not sealed yet."""
    tables = [read_log(p) for p in _logs(Path(directory))]
    t = pa.concat_tables(tables) if tables else _schema().empty_table()
    return t.select(columns) if columns else t


def seal(log: str | Path) -> Path | None:
    """Write ``log``'s rows as a Parquet part beside it (atomically), then remove the log."""
    log = Path(log)
    part = _part_for(log)
    if not part.exists():
        table = read_log(log)
        if table.num_rows:
            write_part(log.parent, table, part.name)
        else:
            part = None
    log.unlink(missing_ok=True)
    return part


def seal_all(directory: str | Path) -> int:
    """Seal every log in ``directory`` (call it when no caller is writing); returns how many."""
    logs = sorted(Path(directory).glob("log-*.arrows"))
    for log in logs:
        seal(log)
    return len(logs)
