"""Request and response bodies of the two rerank APIs this server speaks.

* Cohere ``POST /v2/rerank`` — https://docs.cohere.com/reference/rerank
* ZeroEntropy ``POST /v1/models/rerank`` — https://docs.zeroentropy.dev (hosted API closing;
  clients keep working by pointing their base URL here).

Unknown request fields are ignored (clients of either API send a few this server does not use);
``documents`` must be strings: strict types, so ``1`` or ``{"text": …}`` is a 400 naming the index.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

__all__ = ["CohereRerankRequest", "CohereRerankResponse", "RerankResult", "ZeroEntropyRerankRequest",
           "ZeroEntropyRerankResponse"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CohereRerankRequest(_Request):
    """Cohere v2 rerank request."""

    model: StrictStr = Field(description="Served model name or alias (`GET /v1/models`).")
    query: StrictStr = Field(description="The search query (not empty).")
    documents: list[StrictStr] = Field(description="Texts to rank (1 to `serve.max_documents`).")
    top_n: int | None = Field(None, ge=1, description="Return only the best N (default: all).")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Truncate each document to this many "
                                           "tokens (capped by the server's budget).")


class ZeroEntropyRerankRequest(_Request):
    """ZeroEntropy ``/v1/models/rerank`` request."""

    model: StrictStr = Field(description="Served model name or alias (`GET /v1/models`).")
    query: StrictStr = Field(description="The search query (not empty).")
    documents: list[StrictStr] = Field(description="Texts to rank (1 to `serve.max_documents`).")
    top_n: int | None = Field(None, ge=1, description="Return only the best N (default: all).")
    latency: Literal["fast", "slow"] | None = Field(None, description="Accepted for compatibility; one "
                                                    "latency mode is served.")


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(ge=0.0, le=1.0, description="Relevance in [0, 1].")


class _BilledUnits(BaseModel):
    search_units: int


class _Tokens(BaseModel):
    input_tokens: int
    output_tokens: int = 0


class _ApiVersion(BaseModel):
    version: str = "2"


class _Meta(BaseModel):
    api_version: _ApiVersion = Field(default_factory=_ApiVersion)
    billed_units: _BilledUnits
    tokens: _Tokens


class CohereRerankResponse(BaseModel):
    id: str
    results: list[RerankResult] = Field(description="Sorted by relevance_score, best first.")
    meta: _Meta


class ZeroEntropyRerankResponse(BaseModel):
    results: list[RerankResult] = Field(description="Sorted by relevance_score, best first.")
    e2e_latency: float = Field(description="Seconds from request received to response built.")
    inference_latency: float = Field(description="Seconds spent waiting for and running the model.")
    total_tokens: int = Field(description="Tokens scored (query + document, after truncation).")
    total_bytes: int = Field(description="UTF-8 bytes of the query and documents.")
