"""Connect to Ray once per process, the same way for the CLI, tests and `ray job submit`."""

from __future__ import annotations

import logging
import os

from zelo_ray.config import RayConfig

__all__ = ["ensure_ray", "metrics_url"]


def ensure_ray(cfg: RayConfig | None = None) -> None:
    """Initialise Ray unless it already is. Inside ``ray job submit`` (``RAY_ADDRESS`` set) this
    joins the job's cluster; otherwise ``cfg.address`` or a fresh local instance."""
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address or os.environ["RAY_ADDRESS"], **kwargs)
    else:
        if cfg.metrics_export_port:
            kwargs["_metrics_export_port"] = cfg.metrics_export_port
        ray.init(num_cpus=cfg.num_cpus, **kwargs)
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.print_on_execution_start = False


def metrics_url() -> str | None:
    """The Prometheus endpoint of the node this process runs on (None when Ray does not say)."""
    import ray

    here = ray.util.get_node_ip_address()
    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") == here and node.get("MetricsExportPort"):
            return f"http://{here}:{node['MetricsExportPort']}/metrics"
    return None
