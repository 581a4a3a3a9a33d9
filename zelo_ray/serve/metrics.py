"""The replica's Prometheus metrics, through Ray's metrics API (``ray.util.metrics``).

Each replica records into Ray's per-node metrics agent, which serves them with Ray Serve's own
``ray_serve_*`` metrics on the node's metrics export port (``ray start --metrics-export-port``,
``ray.metrics_export_port`` for a local instance; ``zelo serve`` prints the URL). Ray prefixes
every name with ``ray_`` and exports counters with a ``_total`` suffix:

=====================================================  =========  ===============================
metric                                                  type       tags
=====================================================  =========  ===============================
``ray_zelo_rerank_requests_total``                      counter    api, status
``ray_zelo_rerank_errors_total``  (status ≥ 400)        counter    api, status
``ray_zelo_rerank_latency_seconds``                     histogram  api
``ray_zelo_rerank_documents``  (per request)            histogram  api
``ray_zelo_rerank_tokens``  (per request, scored)       histogram  api
``ray_zelo_rerank_scored_tokens_total``                 counter    api
``ray_zelo_rerank_windows_total``  (long documents)     counter    api
``ray_zelo_rerank_batch_requests``  (per forward call)  histogram
``ray_zelo_rerank_batch_pairs``                         histogram
``ray_zelo_rerank_batch_fill``  (tokens / budget)       histogram
=====================================================  =========  ===============================

A "batch" is one call of the replica's ``@serve.batch`` scorer: the pairs of every request that
arrived within ``serve.batch_wait_timeout_s``; ``batch_requests`` > 1 is cross-request batching
at work and ``batch_fill`` says how full the token budget (``serve.max_batch_tokens``) ran.
Ray approximates a histogram's ``_sum`` from bucket midpoints: read means from the buckets
(``histogram_quantile``) rather than ``_sum / _count``. docs/serving.md has example queries.
"""

from __future__ import annotations

__all__ = ["ServeMetrics", "rss_mb"]


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux; None elsewhere): `/healthz` reports it so a
    load test can watch a replica's memory."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None

LATENCY_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
DOCUMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
TOKENS = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576]
BATCH_REQUESTS = [1, 2, 4, 8, 16, 32, 64]
BATCH_PAIRS = [1, 4, 16, 64, 256, 1024, 4096]
FILL = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0]


class ServeMetrics:
    """Counters and histograms of one replica; the tag ``model`` is the served model name.

    Used by :class:`zelo_ray.serve.service.RerankService` (``request``) and the Serve
    deployment's batch scorer (``batch``); it must be created inside a Ray worker or driver.
    """

    def __init__(self, model_name: str, max_batch_tokens: int):
        from ray.util.metrics import Counter, Histogram

        self.max_batch_tokens = max_batch_tokens
        api = ("api", "model")
        self._requests = Counter("zelo_rerank_requests", description="Rerank requests answered, by API "
                                 "shape and HTTP status.", tag_keys=(*api, "status"))
        self._errors = Counter("zelo_rerank_errors", description="Rerank requests answered with an error "
                               "status (4xx: the client's input or key; 5xx: the server).",
                               tag_keys=(*api, "status"))
        self._latency = Histogram("zelo_rerank_latency_seconds", description="Time from a request's body "
                                  "arriving in the replica to its answer, seconds.", boundaries=LATENCY_S,
                                  tag_keys=api)
        self._documents = Histogram("zelo_rerank_documents", description="Documents per answered request.",
                                    boundaries=DOCUMENTS, tag_keys=api)
        self._tokens = Histogram("zelo_rerank_tokens", description="Tokens scored per answered request "
                                 "(query + document, every window).", boundaries=TOKENS, tag_keys=api)
        self._scored = Counter("zelo_rerank_scored_tokens", description="Tokens scored (exact, for "
                               "tokens/s: a histogram's sum is approximate).", tag_keys=api)
        self._windows = Counter("zelo_rerank_windows", description="Extra windows scored for documents "
                                "longer than one pair's token budget (serve.long_documents: chunk_max).",
                                tag_keys=api)
        self._batch_requests = Histogram("zelo_rerank_batch_requests", description="Requests whose pairs "
                                         "share one batched forward call.", boundaries=BATCH_REQUESTS,
                                         tag_keys=("model",))
        self._batch_pairs = Histogram("zelo_rerank_batch_pairs", description="(query, document) pairs per "
                                      "batched forward call.", boundaries=BATCH_PAIRS, tag_keys=("model",))
        self._batch_fill = Histogram("zelo_rerank_batch_fill", description="Tokens of a batched forward "
                                     "call over serve.max_batch_tokens.", boundaries=FILL, tag_keys=("model",))
        for m in (self._requests, self._errors, self._latency, self._documents, self._tokens, self._scored,
                  self._windows, self._batch_requests, self._batch_pairs, self._batch_fill):
            m.set_default_tags({"model": model_name})

    def request(self, api: str, status: int, seconds: float, documents: int = 0, tokens: int = 0,
                windows: int = 0) -> None:
        """One answered request (``documents``/``tokens`` are 0 for a refused one)."""
        tags = {"api": api, "status": str(status)}
        self._requests.inc(1, tags=tags)
        if status >= 400:
            self._errors.inc(1, tags=tags)
        self._latency.observe(seconds, tags={"api": api})
        if status < 400:
            self._documents.observe(documents, tags={"api": api})
            self._tokens.observe(tokens, tags={"api": api})
            if tokens:
                self._scored.inc(tokens, tags={"api": api})
            if windows:
                self._windows.inc(windows, tags={"api": api})

    def batch(self, requests: int, pairs: int, tokens: int) -> None:
        """One batched forward call over the pairs of ``requests`` requests."""
        self._batch_requests.observe(requests)
        self._batch_pairs.observe(pairs)
        self._batch_fill.observe(min(tokens / max(self.max_batch_tokens, 1), 1.0))
