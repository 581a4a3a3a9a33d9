"""``zelo serve``: start Ray Serve with the reranker app on ``serve.host:serve.port``."""

from __future__ import annotations

import signal
import time

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout

__all__ = ["resolve_checkpoint", "start_server"]

APP_NAME = "zelo-reranker"


def resolve_checkpoint(cfg: ZeloConfig) -> str:
    if cfg.serve.checkpoint:
        return cfg.serve.checkpoint

    return str(layout(cfg).train / "model")


def start_server(cfg: ZeloConfig, *, blocking: bool = True, log=print) -> str:
    """Deploy the app; returns the base URL. Blocking: serve until Ctrl-C, then shut Serve down."""
    from ray import serve

    from zelo_ray.raysession import ensure_ray, metrics_url
    from zelo_ray.serve.app import build_app
    from zelo_ray.serve.service import api_keys_from_env

    checkpoint = resolve_checkpoint(cfg)
    app = build_app({**cfg.serve.model_dump(), "checkpoint": checkpoint})  # validates before Ray starts
    ensure_ray(cfg.ray)
    try:
        serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
        t0 = time.perf_counter()
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        url = f"http://{cfg.serve.host}:{cfg.serve.port}"
        n_keys = len(api_keys_from_env(cfg.serve.api_keys_env))
        auth = (f"bearer token required ({n_keys} keys in ${cfg.serve.api_keys_env})" if n_keys else
                f"off (set ${cfg.serve.api_keys_env} to require a bearer token)")
        log(f"serving {checkpoint} as {cfg.serve.model_name!r} at {url} "
            f"(ready in {time.perf_counter() - t0:.1f} s)\n"
            f"  POST {url}/v2/rerank          (Cohere v2)\n"
            f"  POST {url}/v1/rerank          (Cohere v1, Jina)\n"
            f"  POST {url}/rerank             (text-embeddings-inference)\n"
            f"  POST {url}/v1/models/rerank   (ZeroEntropy)\n"
            f"  GET  {url}/v1/models, {url}/healthz, API docs at {url}/docs\n"
            f"  metrics (Prometheus): {metrics_url() or 'the metrics export port of each Ray node'}\n"
            f"  auth: {auth}")
        if not blocking:
            return url
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the shutdown
        log("shutting down")
        serve.shutdown()
    return url
