"""Mirror a run directory to durable storage (``data.output_uri``: a local path, ``file://``,
``s3://``, ``gs://`` — any pyarrow filesystem URI) and back.

Stages work in ``data.workdir`` (local or a shared mount every node sees); before a stage the
missing files are pulled from the URI, after it (also after a failure, so paid-for votes and
checkpoints survive the machine) the new or changed files are pushed. A re-run on a fresh
cluster therefore resumes from what the URI holds.

Object stores throttle (503 SlowDown), drop connections and time out. Each file is copied
through explicit streams (pyarrow's ``copy_files`` ignores an error on closing an upload), its
size is checked after the copy, a local destination is written under a temporary name and
renamed, and a failed copy is tried again with backoff (:class:`Retry`, ``data.storage_attempts``)
— so a file is either whole where it lands or absent, and an error that persists raises
:class:`StorageError` naming the URI.

Example::

    >>> import tempfile, pathlib
    >>> src = pathlib.Path(tempfile.mkdtemp()); (src / "a.json").write_text("{}")
    2
    >>> dst = "file://" + tempfile.mkdtemp()
    >>> push(src, dst)
    1
    >>> push(src, dst)            # nothing changed: nothing sent
    0
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from zelo_ray.retry import backoff_delay

__all__ = ["Retry", "RunSync", "StorageError", "local_copy", "pull", "push", "push_file", "write_json"]

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """A copy to or from durable storage that kept failing; the message names the URI."""


@dataclass(frozen=True)
class Retry:
    """How often a copy or listing is tried (``attempts``) and the first backoff between tries
    (doubling, with jitter, capped at 30 s); each try already includes the cloud SDK's own quick
    retries."""

    attempts: int = 5
    backoff_s: float = 1.0

    @classmethod
    def of(cls, data) -> "Retry":
        """The policy a run's ``data`` config section sets (``storage_attempts``, ``storage_backoff_s``)."""
        return cls(data.storage_attempts, data.storage_backoff_s)

    def run(self, what: str, fn):
        """``fn()``, tried again on ``OSError``; :class:`StorageError` naming ``what`` when the last
        try fails too. A missing file is not retried."""
        for attempt in range(self.attempts):
            try:
                return fn()
            except FileNotFoundError:
                raise
            except OSError as e:
                if attempt + 1 == self.attempts:
                    raise StorageError(f"{what}: {e} (failed {self.attempts} times; check the storage "
                                       "service and the credentials, then re-run: what was copied is kept)") from e
                delay = backoff_delay(attempt, base=self.backoff_s, cap=30.0, u=random.random())
                log.warning("%s: %s; trying again in %.1f s (%d/%d)", what, e, delay, attempt + 1, self.attempts)
                time.sleep(delay)


def _join(uri: str, rel: str) -> str:
    return f"{uri.rstrip('/')}/{rel}"

def _fs(uri: str):
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), str(Path(uri).resolve())
    return fs.FileSystem.from_uri(uri)


def _listing(filesystem, root: str) -> dict[str, tuple[int, float]]:
    from pyarrow import fs

    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.NotFound:
        return {}
    sel = fs.FileSelector(root, recursive=True)
    return {i.path[len(root):].lstrip("/"): (i.size, i.mtime.timestamp() if i.mtime else 0.0)
            for i in filesystem.get_file_info(sel) if i.type == fs.FileType.File}


def _copy_file(src_fs, src: str, dst_fs, dst: str, size: int) -> None:
    """Copy one file so that it is whole where it lands or absent: a local destination is written
    under a temporary name and renamed; an object store makes an upload visible only when it
    completes, and one of the wrong size is deleted."""
    from pyarrow import fs

    parent, name = dst.rsplit("/", 1)
    dst_fs.create_dir(parent, recursive=True)
    local = isinstance(dst_fs, fs.LocalFileSystem)
    target = f"{parent}/.tmp-{uuid.uuid4().hex[:8]}-{name}" if local else dst
    try:
        with src_fs.open_input_stream(src) as i, dst_fs.open_output_stream(target) as o:
            while chunk := i.read(8 << 20):
                o.write(chunk)
        got = dst_fs.get_file_info(target).size
        if got != size:
            if not local:
                dst_fs.delete_file(target)
            raise OSError(f"copied {got} of {size} bytes")
        if local:
            os.replace(target, dst)
    finally:
        if local:
            Path(target).unlink(missing_ok=True)


def _copy(src_fs, src_root: str, dst_fs, dst_root: str, pushing: bool, uri: str, retry: Retry) -> int:
    have = retry.run(f"listing {uri}", lambda: _listing(dst_fs, dst_root))
    files = retry.run(f"listing {uri}", lambda: _listing(src_fs, src_root))
    n = 0
    for rel, (size, mtime) in sorted(files.items()):
        if pushing and ("/sockets/" in f"/{rel}" or rel.startswith("logs/ray/")):
            continue  # logs/ray links to this machine's Ray session (runlog.link_ray_logs): not the run's
        if rel.rsplit("/", 1)[-1].startswith(".tmp-"):
            continue  # a file being written (here, or by a copy that was cut short)
        if rel in have and have[rel][0] == size:
            # same size: a push re-sends only a file rewritten since its last upload (a JSON report);
            # immutable parts (votes, checkpoints) are sent once. A pull never overwrites a local file
            # of the same size: the local copy is at least as new.
            if not pushing or mtime <= have[rel][1]:
                continue
        retry.run(f"{'pushing to' if pushing else 'pulling'} {_join(uri, rel)}",
                  lambda: _copy_file(src_fs, f"{src_root}/{rel}", dst_fs, f"{dst_root}/{rel}", size))
        n += 1
    return n


def push(local: str | Path, uri: str, *, retry: Retry = Retry()) -> int:
    """Copy new or changed files of ``local`` to ``uri``; returns how many were copied."""
    from pyarrow import fs

    dst_fs, dst_root = _fs(uri)
    return _copy(fs.LocalFileSystem(), str(Path(local).resolve()), dst_fs, dst_root.rstrip("/"), True, uri, retry)


def push_file(local: str | Path, uri: str, *, retry: Retry = Retry()) -> bool:
    """Copy one file to ``uri`` unless a file of the same size is there; True if it was copied."""
    from pyarrow import fs

    dst_fs, dst = _fs(uri)
    size = Path(local).stat().st_size
    info = retry.run(f"checking {uri}", lambda: dst_fs.get_file_info(dst))
    if info.type == fs.FileType.File and info.size == size:
        return False
    retry.run(f"pushing to {uri}", lambda: _copy_file(fs.LocalFileSystem(), str(Path(local).resolve()),
                                                       dst_fs, dst, size))
    return True


def pull(uri: str, local: str | Path, *, retry: Retry = Retry()) -> int:
    """Copy files under ``uri`` that ``local`` lacks (or has at another size) into ``local``."""
    from pyarrow import fs

    src_fs, src_root = _fs(uri)
    Path(local).mkdir(parents=True, exist_ok=True)
    return _copy(src_fs, src_root.rstrip("/"), fs.LocalFileSystem(), str(Path(local).resolve()), False, uri, retry)


def local_copy(uri: str, cache: str | Path | None = None) -> str:
    """A local folder for ``uri``: a plain path is returned as it is; a URI (s3://, gs://, file://)
    is copied once into ``cache`` (default ~/.cache/zelo-ray/<hash>) and reused after."""
    if "://" not in uri:
        return uri
    import hashlib

    import fcntl

    local = Path(cache or Path.home() / ".cache" / "zelo-ray") / hashlib.sha256(uri.encode()).hexdigest()[:16]
    local.parent.mkdir(parents=True, exist_ok=True)
    # several actors of one node may ask at once: one copies, the others wait and find it there
    with open(f"{local}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pull(uri, local)
    return str(local)


class RunSync:
    """Keeps a run directory and its durable copy (``data.output_uri``) in step: pulled before a
    command, pushed after each finished stage and when the command ends — also when it fails,
    since what was paid for must reach durable storage. Without a URI it does nothing.

    Example::

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as run, tempfile.TemporaryDirectory() as store:
        ...     sync = RunSync(run, store, log=lambda m: None)
        ...     with sync:
        ...         _ = Path(run, "metrics.json").write_text("{}")
        ...     sorted(p.name for p in Path(store).iterdir())
        ['metrics.json']
    """

    def __init__(self, local: str | Path, uri: str | None, *, log=print, retry: Retry = Retry()) -> None:
        self.local, self.uri, self.log, self.retry = Path(local), uri, log, retry

    def pull(self) -> None:
        if self.uri:
            n = pull(self.uri, self.local, retry=self.retry)
            self.log(f"zelo: pulled {n} files from {self.uri} into {self.local}")

    def push(self, stage: str | None = None) -> None:
        """Push new or changed files (after ``stage``, or at the end when it is None)."""
        if self.uri:
            n = push(self.local, self.uri, retry=self.retry)
            self.log(f"zelo: {stage + ' done; ' if stage else ''}pushed {n} files from {self.local} to {self.uri}")

    def __enter__(self) -> "RunSync":
        self.pull()
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            self.push()
        except StorageError as e:
            if exc is None:
                raise
            self.log(f"zelo: {e}")  # the command's own failure is the one to report

def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically (a crash leaves the old file or the new, never half)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)
