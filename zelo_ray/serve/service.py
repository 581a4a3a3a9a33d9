"""What a rerank call does, without Ray: authorise, bound, parse, validate, tokenise, score,
shape the response — for each API shape the server speaks (schemas.py). Every bad input is a 4xx
naming the field, in the error body that API's clients read; only a model failure is a 5xx.

The Serve deployment (``app.py``) wraps this; tests drive it directly too.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import time
import uuid
from typing import Awaitable, Callable

import numpy as np
from pydantic import BaseModel, ValidationError

from zelo_ray.config.serve import ServeConfig
from zelo_ray.serve.admission import Admission
from zelo_ray.serve.schemas import CohereRerankRequest, TEIRerankRequest, V1RerankRequest, ZeroEntropyRerankRequest

__all__ = ["APIS", "RerankError", "RerankService", "api_keys_from_env", "describe_validation_error", "error_body"]

APIS: dict[str, type[BaseModel]] = {"cohere": CohereRerankRequest, "cohere_v1": V1RerankRequest,
                                    "tei": TEIRerankRequest, "zeroentropy": ZeroEntropyRerankRequest}
"""API shape → request model: Cohere v2 (/v2/rerank), Cohere v1 and Jina (/v1/rerank),
text-embeddings-inference (/rerank), ZeroEntropy (/v1/models/rerank)."""

log = logging.getLogger("ray.serve")


def error_body(api: str, status: int, message: str) -> dict:
    """An error in the shape ``api``'s clients read."""
    if api == "zeroentropy":
        return {"detail": message}
    if api == "tei":
        kind = {401: "Unauthorized", 404: "NotFound", 413: "PayloadTooLarge", 429: "Overloaded", 500: "Backend",
                503: "Overloaded"}.get(status, "Validation")
        return {"error": message, "error_type": kind}
    return {"message": message}


def _documents(api: str, req: BaseModel) -> list[str]:
    if api == "tei":
        return req.texts
    if api == "cohere_v1":
        return [d if isinstance(d, str) else d.text for d in req.documents]
    return req.documents


class RerankError(Exception):
    """A client error: HTTP status + a message that names what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def api_keys_from_env(name: str) -> list[str]:
    return [k.strip() for k in os.environ.get(name, "").split(",") if k.strip()]


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ""
        for p in e["loc"]:
            loc += f"[{p}]" if isinstance(p, int) else (f".{p}" if loc else str(p))
        parts.append(f"{loc or 'body'}: {e['msg']}")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more errors" if more > 0 else "")


class RerankService:
    """``await service.rerank(api, body, headers) → (status, payload)``."""

    def __init__(self, cfg: ServeConfig, *, encode: Callable, score: Callable[[list], Awaitable[np.ndarray]],
                 model_info: dict, api_keys: list[str] | None = None,
                 fuse: Callable[[str, list[str], np.ndarray], np.ndarray] | None = None,
                 windows: Callable | None = None, metrics=None, admission: Admission | None = None):
        """``windows``: the engine's window splitter (:meth:`ScoringEngine.windows`); without it a
        long document is truncated whatever ``serve.long_documents`` says. ``metrics``: where each
        answered request is recorded (``metrics.request(api, status, seconds, documents, tokens,
        windows)``, e.g. :class:`zelo_ray.serve.metrics.ServeMetrics`); None records nothing.
        ``admission``: the replica's token budget (requests past it are shed); None admits all."""
        self.cfg, self._encode, self._score, self.model_info = cfg, encode, score, model_info
        self.metrics = metrics
        self.admission = admission
        self._windows = windows
        self._fuse = fuse  # the checkpoint's served function over one call's documents (train/fusion.py)
        self.api_keys = api_keys_from_env(cfg.api_keys_env) if api_keys is None else api_keys
        self.names = [cfg.model_name, *cfg.model_aliases]
        self._mapped: set[str] = set()

    # -- checks --------------------------------------------------------------------------------
    def authorize(self, authorization: str | None) -> None:
        if not self.api_keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RerankError(401, "missing bearer token: send 'Authorization: Bearer <key>'")
        # compare against every key (constant time each) so timing does not reveal which matched
        ok = [hmac.compare_digest(token.strip().encode(), k.encode()) for k in self.api_keys]
        if not any(ok):
            raise RerankError(401, "invalid API key")

    def parse(self, api: str, body: bytes) -> tuple[BaseModel, list[str]]:
        """The validated request and its documents' texts."""
        if len(body) > self.cfg.max_request_bytes:
            raise RerankError(413, f"request body is {len(body):,} bytes; this server accepts at most "
                                   f"{self.cfg.max_request_bytes:,} (serve.max_request_bytes)")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RerankError(400, f"body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise RerankError(400, f"body must be a JSON object, got {type(data).__name__}")
        try:
            req = APIS[api].model_validate(data)
        except ValidationError as e:
            raise RerankError(400, describe_validation_error(e)) from None
        docs = _documents(api, req)
        field = "texts" if api == "tei" else "documents"
        # JSON may escape lone UTF-16 surrogates ("\ud800") that are not text in any encoding;
        # the tokenizer cannot take them, so they are the client's error, named by field
        for name, text in (("query", req.query), *((f"{field}[{i}]", d) for i, d in enumerate(docs))):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise RerankError(400, f"{name}: contains an unpaired surrogate "
                                           f"({text[e.start]!r} at character {e.start}), which is not "
                                           "valid Unicode text") from None
        if not req.query.strip():
            raise RerankError(400, "query: must not be empty")
        if not docs:
            raise RerankError(400, f"{field}: at least one document is required")
        if len(docs) > self.cfg.max_documents:
            raise RerankError(400, f"{field}: {len(docs):,} documents; this server accepts at "
                                   f"most {self.cfg.max_documents:,} per request (serve.max_documents)")
        self._check_model(getattr(req, "model", None))
        return req, docs

    def _check_model(self, name: str | None) -> None:
        """With ``serve.strict_model``, only the served names; otherwise any name (a client that
        switched only its base URL still sends its old provider's model name), logged once."""
        if self.cfg.strict_model:
            if name not in self.names:
                raise RerankError(404, f"model {name!r} is not served here; available: {self.names}")
            return
        if name is not None and name not in self.names and name not in self._mapped:
            self._mapped.add(name)
            log.info("requests for model %r are answered by %s (serve.strict_model is off)", name,
                     self.cfg.model_name)

    # -- the call ------------------------------------------------------------------------------
    async def rerank(self, api: str, body: bytes, authorization: str | None = None) -> tuple[int, dict | list]:
        """``(status, payload)``: the answer in ``api``'s shape, or its error body. A failure of the
        model itself is a 500 with the exception named (and logged with its traceback)."""
        t0 = time.perf_counter()
        stats = {"documents": 0, "tokens": 0, "windows": 0}
        try:
            self.authorize(authorization)
            if self.admission is not None and not self.admission.admits_any():
                self._shed()  # before any parsing or tokenising: shedding must stay cheap
            req, docs = self.parse(api, body)
            status, payload = await self._answer(api, req, docs, t0, stats)
        except RerankError as e:
            status, payload = e.status, error_body(api, e.status, e.message)
        except Exception as e:  # noqa: BLE001 - the client gets its API's error body, the log the traceback
            log.exception("rerank failed (%s)", api)
            status, payload = 500, error_body(api, 500, f"scoring failed: {type(e).__name__}: {e}"[:500])
        if self.metrics is not None:
            self.metrics.request(api, status, time.perf_counter() - t0, **stats)
        return status, payload

    async def _answer(self, api: str, req: BaseModel, docs: list[str], t0: float,
                      stats: dict) -> tuple[int, dict | list]:
        pairs, owner = await self._pairs(api, req, docs)
        tokens = int(sum(p.n_tokens for p in pairs))
        stats.update(documents=len(docs), tokens=tokens, windows=len(pairs) - len(docs))
        if self.admission is not None and not self.admission.try_admit(tokens):
            self._shed(tokens)
        t1 = time.perf_counter()
        try:
            scores = await self._scored(req, docs, pairs, owner)
        finally:
            if self.admission is not None:
                self.admission.release(tokens)
        return self._shaped(api, req, docs, scores, tokens, t0, time.perf_counter() - t1)

    def _shed(self, tokens: int | None = None) -> None:
        gate = self.admission
        what = f"{tokens:,} more tokens would wait" if tokens is not None else "the queue is full"
        raise RerankError(self.cfg.overload_status,
                          f"server overloaded: {what} behind {gate.pending_tokens:,} tokens of "
                          f"{gate.pending_requests} requests (serve.max_pending_tokens = "
                          f"{gate.max_pending_tokens:,}); retry after {self.cfg.retry_after_s:g} s")

    def headers(self, status: int) -> dict[str, str] | None:
        """Response headers for ``status``: ``Retry-After`` on a shed request."""
        if status == self.cfg.overload_status and self.admission is not None:
            return {"Retry-After": str(math.ceil(self.cfg.retry_after_s))}
        return None

    async def _pairs(self, api: str, req: BaseModel, docs: list[str]) -> tuple[list, np.ndarray | None]:
        """The tokenised (query, document or window) pairs, and each window's document (None when
        no document was split)."""
        budget = self.cfg.max_tokens_per_doc
        if getattr(req, "max_tokens_per_doc", None):
            budget = min(budget, req.max_tokens_per_doc)
        keep = "end" if getattr(req, "truncation_direction", "Right").lower() == "left" else "start"
        if self._chunked(api, req, keep):
            limit = min(self.cfg.max_windows_per_doc, getattr(req, "max_chunks_per_doc", None) or 10**9)
            texts, owner = await asyncio.to_thread(self._windows, req.query, docs, max_doc_tokens=budget,
                                                   overlap=self.cfg.window_overlap_tokens, max_windows=limit)
        else:
            texts, owner = docs, None
        return await asyncio.to_thread(self._encode, req.query, texts, max_doc_tokens=budget, keep=keep), owner

    async def _scored(self, req: BaseModel, docs: list[str], pairs: list, owner) -> np.ndarray:
        """One score per document: the model's (a long document's best window), fused with BM25
        when the checkpoint serves a fused function."""
        scores = np.asarray(await self._score(pairs), dtype=np.float64)
        if owner is not None and len(owner) > len(docs):
            # a long document scores as its best window
            best = np.full(len(docs), -np.inf)
            np.maximum.at(best, owner, scores)
            scores = best
        if self._fuse is not None:
            scores = await asyncio.to_thread(self._fuse, req.query, docs, scores)
        return scores

    def _shaped(self, api: str, req: BaseModel, docs: list[str], scores: np.ndarray, tokens: int, t0: float,
                t_inf: float) -> tuple[int, dict | list]:
        """The answer in ``api``'s response shape."""
        # stable sort: equal scores keep request order, so responses are deterministic
        order = np.argsort(-scores, kind="stable")[: getattr(req, "top_n", None) or len(scores)]
        clipped = np.clip(scores, 0.0, 1.0)
        results = [{"index": int(i), "relevance_score": float(clipped[i])} for i in order]
        units = math.ceil(len(docs) / 100)
        if api == "cohere":
            return 200, {"id": str(uuid.uuid4()), "results": results,
                         "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": units},
                                  "tokens": {"input_tokens": tokens, "output_tokens": 0}}}
        if api == "cohere_v1":
            echo = req.return_documents
            if echo is None:  # each API's own default
                echo = (req.model or "").lower().startswith("jina")
            if echo:
                results = [{**r, "document": {"text": docs[r["index"]]}} for r in results]
            return 200, {"id": str(uuid.uuid4()), "model": self.cfg.model_name, "results": results,
                         "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": units}},
                         "usage": {"total_tokens": tokens, "prompt_tokens": tokens}}
        if api == "tei":
            # raw_scores: the logit the score was squashed from (monotone: the order is the same)
            shown = np.log(np.clip(scores, 1e-7, 1 - 1e-7) / (1 - np.clip(scores, 1e-7, 1 - 1e-7))) \
                if req.raw_scores else clipped
            return 200, [{"index": int(i), "score": float(shown[i]),
                          **({"text": docs[int(i)]} if req.return_text else {})} for i in order]
        n_bytes = len(req.query.encode()) + sum(len(d.encode()) for d in docs)
        return 200, {"results": results, "e2e_latency": round(time.perf_counter() - t0, 6),
                     "inference_latency": round(t_inf, 6), "total_tokens": tokens, "total_bytes": n_bytes}

    def _chunked(self, api: str, req: BaseModel, keep: str) -> bool:
        """Whether long documents are scored as windows in this call (see ``serve.long_documents``)."""
        if self._windows is None or self.cfg.long_documents != "chunk_max" or keep == "end":
            return False
        if api == "tei" and req.truncate:
            return False
        # Cohere v2's documented behaviour for max_tokens_per_doc is truncation
        return not (api == "cohere" and req.max_tokens_per_doc)

    def models(self) -> dict:
        created = int(time.time())
        return {"object": "list",
                "data": [{"id": n, "object": "model", "created": created, "owned_by": "zelo-ray",
                          "alias_of": None if n == self.cfg.model_name else self.cfg.model_name,
                          **{k: self.model_info.get(k) for k in ("kind", "max_length")},
                          "max_documents": self.cfg.max_documents,
                          "max_tokens_per_doc": self.cfg.max_tokens_per_doc} for n in self.names]}
