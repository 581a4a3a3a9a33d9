"""Where Ray's workers find the run directory's files — without assuming a shared file system.

The driver works in ``data.workdir`` on its own disk. Tasks and actors may run on any node, and on
a cluster whose nodes share no mount (cluster/aws.yaml, the KubeRay manifests) a path of the
driver's disk means nothing elsewhere. So a stage that hands a file to workers asks
:func:`for_workers` for an address: the local path itself on one machine (or when
``data.shared_workdir`` says the work directory is a mount every node sees); on a multi-node
cluster, the file's copy under ``data.output_uri`` (object storage), pushed there first if it
is not already. Workers that need a local directory (Tantivy, LanceDB) copy it once per node
(:func:`zelo_ray.storage.local_copy`). Ray Train writes its checkpoints to
:func:`checkpoint_storage` — the object store on a multi-node cluster, so a worker on any node
can save and the driver can read the result.

Example (one machine: paths stay paths)::

    >>> from zelo_ray.config import load_config
    >>> cfg = load_config(None, ["data.workdir=/tmp/run"])
    >>> for_workers(cfg, "/tmp/run/data/queries.parquet", nodes=1)
    '/tmp/run/data/queries.parquet'
"""

from __future__ import annotations

from pathlib import Path

from zelo_ray.config import ZeloConfig

__all__ = ["alive_nodes", "checkpoint_storage", "for_workers"]


def alive_nodes() -> int:
    """Nodes of the Ray cluster this process is connected to (Ray must be initialised)."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def _mirror(cfg: ZeloConfig, local: str | Path, what: str) -> str:
    uri = cfg.output_uri()
    if not uri or "://" not in uri or uri.startswith("file://"):
        raise RuntimeError(
            f"{what}: this Ray cluster has several nodes and {local} is on the driver's disk only. Set "
            "data.output_uri to object storage every node reads (s3://…, gs://…), or, if data.workdir is "
            "a mount every node sees (NFS, EFS, a shared volume), set data.shared_workdir: true.")
    from zelo_ray.layout import layout

    run_dir = layout(cfg).workdir
    try:
        rel = Path(local).resolve().relative_to(Path(run_dir).resolve())
    except ValueError:
        raise RuntimeError(f"{what}: {local} is outside the run directory {run_dir}, so it has no "
                           f"copy under data.output_uri") from None
    return f"{uri.rstrip('/')}/{rel.as_posix()}"


def for_workers(cfg: ZeloConfig, local: str | Path, *, what: str = "a stage's input",
                nodes: int | None = None) -> str:
    """An address of ``local`` (a file or folder of the run directory) that Ray workers on any
    node can read; on a multi-node cluster the copy under ``data.output_uri`` is brought up to
    date first. ``nodes``: the cluster's node count when already known."""
    if cfg.data.shared_workdir:
        return str(local)
    if nodes is None:
        nodes = alive_nodes()
    if nodes <= 1:
        return str(local)
    target = _mirror(cfg, local, what)
    from zelo_ray.storage import Retry, push, push_file

    if Path(local).is_dir():
        push(local, target, retry=Retry.of(cfg.data))
    else:
        push_file(local, target, retry=Retry.of(cfg.data))
    return target


def checkpoint_storage(cfg: ZeloConfig, local: str | Path, *, nodes: int | None = None) -> str:
    """Ray Train's ``storage_path`` for checkpoints that would live at ``local``: the path on one
    machine (or a shared work directory), its place under ``data.output_uri`` on several nodes."""
    if cfg.data.shared_workdir:
        return str(local)
    if nodes is None:
        nodes = alive_nodes()
    return str(local) if nodes <= 1 else _mirror(cfg, local, "training checkpoints")
