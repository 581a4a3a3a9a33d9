"""Connect to Ray once per process, the same way for the CLI, tests and `ray job submit`."""

from __future__ import annotations

import logging
import os

from zelo_ray.config import RayConfig

__all__ = ["beside_this_process", "ensure_ray", "metrics_url", "ray_logs_dir", "verbose"]

VERBOSE_ENV = "ZELO_VERBOSE"


def verbose() -> bool:
    """``zelo --verbose`` (or ``ZELO_VERBOSE=1``): Ray's worker output and Ray Data's progress on
    the console too; by default they stay in Ray's log files (``ray_logs_dir``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def beside_this_process() -> dict:
    """Ray options that put a small helper actor (a shared limits book, a line relay) on this
    process's node (soft: elsewhere when it cannot take it), so that it lives as long as the
    driver does instead of dying with a worker node lost mid-run."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)}


def ensure_ray(cfg: RayConfig | None = None) -> None:
    """Initialise Ray unless it already is. Inside ``ray job submit`` (``RAY_ADDRESS`` set) this
    joins the job's cluster; otherwise ``cfg.address`` or a fresh local instance.

    Quiet by default: workers' output is not copied to this console (stages report their own
    progress on the driver) and Ray Data's progress reports and INFO lines stay in its log file.
    """
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    loud = verbose()
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=loud)
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address or os.environ["RAY_ADDRESS"], **kwargs)
    else:
        if cfg.metrics_export_port:
            kwargs["_metrics_export_port"] = cfg.metrics_export_port
        # a local instance turns token auth on by itself and says so on every start: nothing to act on
        auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = auth.level
        if not loud:
            auth.setLevel(logging.ERROR)
        try:
            ray.init(num_cpus=cfg.num_cpus, **kwargs)
        finally:
            auth.setLevel(level)
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.print_on_execution_start = False
    if not loud:
        _quiet_ray_data(ctx)


def _quiet_ray_data(ctx) -> None:
    from ray.util.debug import log_once

    # off a terminal Ray Data's progress is a multi-line report every 10 s; stages print their own
    ctx.enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # spends the one-time "progress bars disabled" notice
    for handler in logging.getLogger("ray.data").handlers:
        # the console handler only: Ray Data's session log file keeps every line
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(max(handler.level, logging.WARNING))


def ray_logs_dir() -> str | None:
    """The current Ray session's log folder on this node (workers' output, Ray's own logs)."""
    try:
        from ray._private.worker import _global_node

        return os.path.join(_global_node.get_session_dir_path(), "logs") if _global_node else None
    except (ImportError, AttributeError):  # a private API: absent means "not known", never an error
        return None


def metrics_url() -> str | None:
    """The Prometheus endpoint of the node this process runs on (None when Ray does not say)."""
    import ray

    here = ray.util.get_node_ip_address()
    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") == here and node.get("MetricsExportPort"):
            return f"http://{here}:{node['MetricsExportPort']}/metrics"
    return None
