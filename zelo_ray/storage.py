"""Mirror a run directory to durable storage (``data.output_uri``: a local path, ``file://``,
``s3://``, ``gs://`` — any pyarrow filesystem URI) and back.

Stages work in ``data.workdir`` (local or a shared mount every node sees); before a stage the
missing files are pulled from the URI, after it (also after a failure, so paid-for votes and
checkpoints survive the machine) the new or changed files are pushed. A re-run on a fresh
cluster therefore resumes from what the URI holds.

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

from pathlib import Path

__all__ = ["RunSync", "local_copy", "pull", "push", "push_file", "write_json"]

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


def _copy(src_fs, src_root: str, dst_fs, dst_root: str, pushing: bool) -> int:
    from pyarrow import fs

    have = _listing(dst_fs, dst_root)
    n = 0
    for rel, (size, mtime) in sorted(_listing(src_fs, src_root).items()):
        if pushing and ("/sockets/" in f"/{rel}" or rel.startswith("logs/ray/")):
            continue  # logs/ray links to this machine's Ray session (runlog.link_ray_logs): not the run's
        if rel in have and have[rel][0] == size:
            # same size: a push re-sends only a file rewritten since its last upload (a JSON report);
            # immutable parts (votes, checkpoints) are sent once. A pull never overwrites a local file
            # of the same size: the local copy is at least as new.
            if not pushing or mtime <= have[rel][1]:
                continue
        parent = f"{dst_root}/{rel}".rsplit("/", 1)[0]
        dst_fs.create_dir(parent, recursive=True)
        fs.copy_files(f"{src_root}/{rel}", f"{dst_root}/{rel}", source_filesystem=src_fs,
                      destination_filesystem=dst_fs)
        n += 1
    return n


def push(local: str | Path, uri: str) -> int:
    """Copy new or changed files of ``local`` to ``uri``; returns how many were copied."""
    from pyarrow import fs

    dst_fs, dst_root = _fs(uri)
    return _copy(fs.LocalFileSystem(), str(Path(local).resolve()), dst_fs, dst_root.rstrip("/"), True)


def push_file(local: str | Path, uri: str) -> bool:
    """Copy one file to ``uri`` unless a file of the same size is there; True if it was copied."""
    from pyarrow import fs

    dst_fs, dst = _fs(uri)
    info = dst_fs.get_file_info(dst)
    if info.type == fs.FileType.File and info.size == Path(local).stat().st_size:
        return False
    dst_fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
    fs.copy_files(str(Path(local).resolve()), dst, source_filesystem=fs.LocalFileSystem(),
                  destination_filesystem=dst_fs)
    return True


def pull(uri: str, local: str | Path) -> int:
    """Copy files under ``uri`` that ``local`` lacks (or has at another size) into ``local``."""
    from pyarrow import fs

    src_fs, src_root = _fs(uri)
    Path(local).mkdir(parents=True, exist_ok=True)
    return _copy(src_fs, src_root.rstrip("/"), fs.LocalFileSystem(), str(Path(local).resolve()), False)


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

    def __init__(self, local: str | Path, uri: str | None, *, log=print) -> None:
        self.local, self.uri, self.log = Path(local), uri, log

    def pull(self) -> None:
        if self.uri:
            n = pull(self.uri, self.local)
            self.log(f"zelo: pulled {n} files from {self.uri} into {self.local}")

    def push(self, stage: str | None = None) -> None:
        """Push new or changed files (after ``stage``, or at the end when it is None)."""
        if self.uri:
            n = push(self.local, self.uri)
            self.log(f"zelo: {stage + ' done; ' if stage else ''}pushed {n} files from {self.local} to {self.uri}")

    def __enter__(self) -> "RunSync":
        self.pull()
        return self

    def __exit__(self, *exc) -> None:
        self.push()



def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically (a crash leaves the old file or the new, never half)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)
