"""A command's log file in its run directory: what libraries say stays there, not on the console.

While a ``zelo`` command runs, every library's log records at INFO and above (Ray, Ray Data,
LanceDB, httpx, transformers …) and Python warnings go to ``<workdir>/logs/zelo.log``; the
console keeps the command's own progress lines and zelo's own warnings (an empty document, a
judge that keeps failing), which a user can act on. At the end,
``<workdir>/logs/ray`` links to the Ray session's log folder (the workers' output), so both are
found from the run directory. ``zelo --verbose`` keeps warnings on the console as well.

    >>> import logging, tempfile, pathlib
    >>> work = pathlib.Path(tempfile.mkdtemp())
    >>> with run_log(work) as path:
    ...     logging.getLogger("some.library").info("an internal detail")
    >>> "an internal detail" in path.read_text()
    True
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["link_ray_logs", "run_log"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def link_ray_logs(workdir: str | Path) -> Path | None:
    """``<workdir>/logs/ray`` → this Ray session's log folder (None when Ray is not running here)."""
    import sys

    if "ray" not in sys.modules:  # never import Ray just to find out it is not running
        return None
    import ray

    from zelo_ray.raysession import ray_logs_dir

    where = ray_logs_dir() if ray.is_initialized() else None
    if where is None:
        return None
    target = Path(where)
    link = Path(workdir) / "logs" / "ray"
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == target:
                return link
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    except OSError:
        return None
    return link


@contextmanager
def run_log(workdir: str | Path | None, *, verbose: bool = False):
    """Route library logs (and, unless ``verbose``, Python warnings) to ``<workdir>/logs/zelo.log``;
    on the way out, link ``<workdir>/logs/ray`` to Ray's session logs when Ray ran here. A command
    without a run directory (``workdir=None``) logs as before."""
    if workdir is None:
        yield None
        return
    path = Path(workdir) / "logs" / "zelo.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_FORMAT))
    # our own warnings (an empty document, a judge that keeps failing) are for the user: the console too
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.addFilter(lambda record: record.name == "zelo_ray" or record.name.startswith("zelo_ray."))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.addHandler(console)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    if not verbose:
        logging.captureWarnings(True)
    try:
        yield path
    finally:
        link_ray_logs(workdir)
        if not verbose:
            logging.captureWarnings(False)
        root.removeHandler(handler)
        root.removeHandler(console)
        root.setLevel(level)
        handler.close()
