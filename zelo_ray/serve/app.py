"""The Ray Serve application: FastAPI ingress + a length-aware ``@serve.batch`` scorer.

    serve run pipelines/configs/serve.yaml              # Serve's own CLI (autoscaling in the YAML)
    zelo serve --checkpoint runs/cranfield/train/model  # the same app from zelo's CLI

Each request is tokenised in the replica (documents cut to the token budget), split into chunks
of at most ``max_batch_tokens // 4`` tokens, and the chunks of all concurrent requests are
batched by ``@serve.batch`` with ``batch_size_fn`` = tokens, so a forward pass is bounded by
tokens rather than documents; ``ScoringEngine.score`` then sorts the batch by length and splits
it again by padded tokens. With ``serve.batching: false`` each request is scored on its own, one
at a time (the baseline of the batching benchmark).
"""

# no `from __future__ import annotations`: FastAPI must see `Request` as a class, not a string
import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from zelo_ray.config.serve import ServeConfig
from zelo_ray.serve.schemas import (CohereRerankRequest, CohereRerankResponse, TEIRerankRequest, TEIRerankResult,
                                    V1RerankRequest, V1RerankResponse, ZeroEntropyRerankRequest,
                                    ZeroEntropyRerankResponse)
from zelo_ray.serve.service import error_body

__all__ = ["RerankServer", "build_app", "deployment_options"]

log = logging.getLogger("ray.serve")

api = FastAPI(title="zelo-ray rerank API",
              description="Rerank documents for a query with a zELO-trained reranker. Speaks Cohere's "
                          "`/v2/rerank`, Cohere v1 / Jina `/v1/rerank`, text-embeddings-inference "
                          "`/rerank` and ZeroEntropy's `/v1/models/rerank`; relevance scores are in "
                          "[0, 1]. Bearer-token auth when `ZELO_API_KEYS` is set on the server.",
              version="1")


def _body_schema(model) -> dict:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}


class _TokenBatchWarning(logging.Filter):
    """Serve warns when max_ongoing_requests < max_batch_size, reading max_batch_size as a request
    count; here it is a token budget (batch_size_fn counts tokens), so the warning does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will never achieve the configured `max_batch_size`" not in record.getMessage()


def _chunk_tokens(items: list) -> int:
    return sum(sum(p.n_tokens for p in chunk) for _, chunk in items)


@serve.deployment(name="RerankServer")
@serve.ingress(api)
class RerankServer:
    """One replica: a loaded ScoringEngine behind the four rerank routes."""

    def __init__(self, settings: dict):
        from zelo_ray.serve.admission import Admission
        from zelo_ray.serve.engine import ScoringEngine, pick_device
        from zelo_ray.serve.metrics import ServeMetrics
        from zelo_ray.serve.service import RerankService
        from zelo_ray.storage import local_copy
        from zelo_ray.scoring.fusion import load_fusion

        self.cfg = ServeConfig(**settings)
        log.addFilter(_TokenBatchWarning())
        folder = local_copy(self.cfg.checkpoint)
        fusion = load_fusion(folder) if self.cfg.fusion else None
        device_type = pick_device(self.cfg.device).type
        self.batch_tokens = self.cfg.batch_tokens(device_type)
        self.engine = ScoringEngine.load(folder, device=self.cfg.device, dtype=self.cfg.dtype,
                                         backend=self.cfg.backend,
                                         max_query_tokens=self.cfg.max_query_tokens,
                                         max_batch_tokens=self.batch_tokens,
                                         max_batch_rows=self.cfg.max_batch_rows)
        self._score_batched.set_max_batch_size(self.batch_tokens)
        self._score_batched.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        self._lock = asyncio.Lock()
        self.metrics = ServeMetrics(self.cfg.model_name, self.batch_tokens)
        self.admission = Admission(self.cfg.pending_tokens(device_type))
        self.service = RerankService(self.cfg, encode=self.engine.encode, score=self._score,
                                     model_info={**self.engine.info(),
                                                 "bm25_weight": fusion.weight if fusion else 0.0},
                                     fuse=fusion.scores if fusion else None, windows=self.engine.windows,
                                     metrics=self.metrics, admission=self.admission)
        log.info("zelo reranker %s loaded: %s; batching %s (%d tokens per forward call); auth %s",
                 self.cfg.model_name, self.engine.info(), "on" if self.cfg.batching else "off", self.batch_tokens,
                 f"on ({len(self.service.api_keys)} keys)" if self.service.api_keys else "off")

    async def _score(self, pairs: list) -> list[float]:
        from zelo_ray.serve.engine import chunk_pairs

        if not self.cfg.batching:
            async with self._lock:  # one forward at a time, as the batched path does
                self.metrics.batch(1, len(pairs), sum(p.n_tokens for p in pairs))
                return (await asyncio.to_thread(self.engine.score, pairs)).tolist()
        chunks = chunk_pairs(pairs, max(self.batch_tokens // 4, 1))
        # each chunk carries its request's identity so a batch can count the requests it merged
        parts = await asyncio.gather(*(self._score_batched((id(pairs), c)) for c in chunks))
        return [s for part in parts for s in part]

    @serve.batch(max_batch_size=16384, batch_wait_timeout_s=0.005, batch_size_fn=_chunk_tokens)
    async def _score_batched(self, items: list[tuple[int, list]]) -> list[list[float]]:
        chunks = [c for _, c in items]
        flat = [p for c in chunks for p in c]
        self.metrics.batch(len({r for r, _ in items}), len(flat), _chunk_tokens(items))
        scores = (await asyncio.to_thread(self.engine.score, flat)).tolist()
        out, s = [], 0
        for c in chunks:
            out.append(scores[s:s + len(c)])
            s += len(c)
        return out

    async def _respond(self, api_name: str, request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.cfg.max_request_bytes:
            msg = (f"request body is {int(declared):,} bytes; this server accepts at most "
                   f"{self.cfg.max_request_bytes:,} (serve.max_request_bytes)")
            self.metrics.request(api_name, 413, 0.0)
            return JSONResponse(error_body(api_name, 413, msg), status_code=413)
        body = await request.body()
        status, payload = await self.service.rerank(api_name, body, request.headers.get("authorization"))
        return JSONResponse(payload, status_code=status, headers=self.service.headers(status))

    @api.post("/v2/rerank", response_model=CohereRerankResponse, openapi_extra=_body_schema(CohereRerankRequest),
              summary="Rerank (Cohere v2 shape)")
    async def cohere_rerank(self, request: Request) -> JSONResponse:
        return await self._respond("cohere", request)

    @api.post("/v1/models/rerank", response_model=ZeroEntropyRerankResponse,
              openapi_extra=_body_schema(ZeroEntropyRerankRequest), summary="Rerank (ZeroEntropy shape)")
    async def zeroentropy_rerank(self, request: Request) -> JSONResponse:
        return await self._respond("zeroentropy", request)

    @api.post("/v1/rerank", response_model=V1RerankResponse, openapi_extra=_body_schema(V1RerankRequest),
              summary="Rerank (Cohere v1 and Jina shape)")
    async def v1_rerank(self, request: Request) -> JSONResponse:
        return await self._respond("cohere_v1", request)

    @api.post("/rerank", response_model=list[TEIRerankResult], openapi_extra=_body_schema(TEIRerankRequest),
              summary="Rerank (text-embeddings-inference shape)")
    async def tei_rerank(self, request: Request) -> JSONResponse:
        return await self._respond("tei", request)

    @api.get("/v1/models", summary="Served models")
    async def models(self) -> dict:
        return self.service.models()

    @api.get("/healthz", summary="Liveness and the loaded model")
    async def healthz(self) -> dict:
        from zelo_ray.serve.metrics import rss_mb

        gate = self.admission
        return {"status": "ok", "model": self.cfg.model_name, **self.engine.info(),
                "max_batch_tokens": self.batch_tokens, "max_pending_tokens": gate.max_pending_tokens,
                "pending_tokens": gate.pending_tokens, "pending_requests": gate.pending_requests,
                "shed": gate.shed, "rss_mb": rss_mb()}

    def check_health(self) -> None:
        # Serve calls this periodically; a replica whose model vanished is restarted
        if self.engine.model is None:
            raise RuntimeError("model not loaded")


def deployment_options(cfg: ServeConfig) -> dict:
    from ray.serve.config import BackpressureConfig

    opts = {"max_ongoing_requests": cfg.max_ongoing_requests, "max_queued_requests": cfg.max_queued_requests,
            # the proxy's answer when its queue for the replicas is full: the status and Retry-After
            # of the replica's own shedding (its body is Serve's plain text)
            "backpressure_config": BackpressureConfig(status_code=cfg.overload_status,
                                                      retry_after_s=cfg.retry_after_s),
            "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}}
    if cfg.autoscaling:
        opts["autoscaling_config"] = cfg.autoscaling.model_dump()
    else:
        opts["num_replicas"] = cfg.num_replicas
    return opts


def build_app(args: dict):
    """Application builder for ``serve run module:build_app key=value`` and Serve config YAMLs.

    ``args`` are fields of the ``serve`` config section (``checkpoint`` is required); they are
    validated here, in the driver, so a typo fails before any replica starts.
    """
    from pydantic import ValidationError

    from zelo_ray.serve.engine import check_servable
    from zelo_ray.serve.service import describe_validation_error

    args = dict(args or {})
    for k in ("autoscaling",):
        if isinstance(args.get(k), str):  # `serve run … autoscaling=…` passes strings
            import json
            args[k] = json.loads(args[k])
    try:
        cfg = ServeConfig(**args)
    except ValidationError as e:
        raise ValueError(f"serve args: {describe_validation_error(e)}") from None
    if not cfg.checkpoint:
        raise ValueError("serve args: checkpoint is required (a model folder)")
    if "://" not in cfg.checkpoint:  # a remote checkpoint is checked by the replica that fetches it
        check_servable(cfg.checkpoint)
    return RerankServer.options(**deployment_options(cfg)).bind(cfg.model_dump())
