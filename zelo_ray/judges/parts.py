"""One Parquet part of the vote store on disk: written whole or not at all, checked when read,
moved aside when damaged.

A part is written under a temporary name, fsynced and renamed into place, with a CRC32 checksum
on every data page; so a crashed writer leaves no part, and a part damaged afterwards (a disk
that filled, a bit that flipped, a copy cut short) is noticed when it is opened (its footer)
or read (its pages), never read as whole. A damaged part is moved into the store's
``quarantine/`` folder with a note of why, so its votes count as unasked and the next run asks
exactly them again.

Example::

    >>> import tempfile, pyarrow as pa
    >>> from pathlib import Path
    >>> from zelo_ray.judges.parts import write_part, read_part, damage, DamagedPart
    >>> d = Path(tempfile.mkdtemp())
    >>> f = write_part(d, pa.table({"x": [1, 2, 3]}), "part-1.parquet")
    >>> read_part(f)["x"].to_pylist()
    [1, 2, 3]
    >>> f.write_bytes(b"")
    0
    >>> damage(f) is not None
    True
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["DamagedPart", "write_part", "read_part", "damage", "quarantine", "quarantined",
           "QUARANTINE"]

QUARANTINE = "quarantine"
"""The folder of a store that damaged parts are moved into (never read as votes)."""


class DamagedPart(Exception):
    """A part that cannot be read as written (truncated, corrupt footer or page, empty)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def write_part(directory: Path, table: pa.Table, name: str) -> Path:
    """Write ``table`` as ``directory/name``: temporary name, page checksums, fsync, rename,
    fsync the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".tmp-{name}"
    with open(tmp, "wb") as f:
        pq.write_table(table, f, write_page_checksum=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return directory / name


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The rows of a part, every page read checked against its checksum; :class:`DamagedPart`
    when it cannot be read as written."""
    try:
        return pq.read_table(path, columns=columns, page_checksum_verification=True)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise DamagedPart(path, f"{type(e).__name__}: {e}") from e


def damage(path: Path) -> str | None:
    """Why ``path``'s footer cannot be opened (truncated, garbage footer, no bytes), or None: the
    cheap check of every part when a store is opened (pages are checked as they are read)."""
    try:
        pq.read_metadata(path)
    except FileNotFoundError:
        return None  # moved or compacted away meanwhile
    except (OSError, pa.ArrowException) as e:
        return f"{type(e).__name__}: {e}"
    return None


def quarantine(root: Path, path: Path, reason: str) -> dict | None:
    """Move the damaged part ``path`` of the store at ``root`` into ``root/quarantine/`` (its
    name keeps its partition folder) with a note of ``reason``; returns the note, or None when
    another process moved it first."""
    where = root / QUARANTINE
    where.mkdir(parents=True, exist_ok=True)
    rel = path.relative_to(root)
    dest = where / "__".join(rel.parts)
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    note = {"part": str(rel), "moved_to": str(dest), "reason": reason, "bytes": dest.stat().st_size,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = where / f".tmp-{dest.name}.json"
    tmp.write_text(json.dumps(note))
    os.replace(tmp, where / f"{dest.name}.json")
    return note


def quarantined(root: Path) -> list[dict]:
    """The notes of every part of the store at ``root`` that was moved aside, oldest first."""
    where = root / QUARANTINE
    notes = [json.loads(n.read_text()) for n in where.glob("*.json")] if where.exists() else []
    return sorted(notes, key=lambda n: (n["at"], n["part"]))
