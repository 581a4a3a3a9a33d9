"""Request and response bodies of the rerank APIs this server speaks, one deployment for all.

* Cohere v2 ``POST /v2/rerank`` — https://docs.cohere.com/reference/rerank
* Cohere v1 and Jina ``POST /v1/rerank`` — the same request (``documents`` as strings or
  ``{"text": …}`` objects, ``top_n``, ``return_documents``); the response carries both APIs'
  fields (Cohere's ``id``/``meta``, Jina's ``model``/``usage``).
* Hugging Face text-embeddings-inference ``POST /rerank`` — ``query``, ``texts``, ``raw_scores``,
  ``return_text``, ``truncate``, ``truncation_direction`` → a list of ``{index, score, text?}``.
* ZeroEntropy ``POST /v1/models/rerank`` — https://docs.zeroentropy.dev (hosted API closing;
  clients keep working by pointing their base URL here).

Unknown request fields are ignored (clients send a few this server does not use). Types are
strict: a document that is a number (or, outside ``/v1/rerank``, an object) is a 400 naming its
index.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

__all__ = ["CohereRerankRequest", "CohereRerankResponse", "RerankResult", "TEIRerankRequest", "TEIRerankResult",
           "V1RerankRequest", "V1RerankResponse", "ZeroEntropyRerankRequest", "ZeroEntropyRerankResponse"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CohereRerankRequest(_Request):
    """Cohere v2 rerank request."""

    model: StrictStr = Field(description="Served model name or alias (`GET /v1/models`).")
    query: StrictStr = Field(description="The search query (not empty).")
    documents: list[StrictStr] = Field(description="Texts to rank (1 to `serve.max_documents`).")
    top_n: int | None = Field(None, ge=1, description="Return only the best N (default: all).")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Truncate each document to this many "
                                           "tokens (capped by the server's budget; no windows).")


class ZeroEntropyRerankRequest(_Request):
    """ZeroEntropy ``/v1/models/rerank`` request."""

    model: StrictStr = Field(description="Served model name or alias (`GET /v1/models`).")
    query: StrictStr = Field(description="The search query (not empty).")
    documents: list[StrictStr] = Field(description="Texts to rank (1 to `serve.max_documents`).")
    top_n: int | None = Field(None, ge=1, description="Return only the best N (default: all).")
    latency: Literal["fast", "slow"] | None = Field(None, description="Accepted for compatibility; one "
                                                    "latency mode is served.")


class TextObject(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: StrictStr


class V1RerankRequest(_Request):
    """Cohere v1 / Jina ``/v1/rerank`` request."""

    model: StrictStr | None = Field(None, description="Any name (answered by the served model unless "
                                    "`serve.strict_model`).")
    query: StrictStr = Field(description="The search query (not empty).")
    documents: list[StrictStr | TextObject] = Field(description="Texts, or objects with a `text` field.")
    top_n: int | None = Field(None, ge=1, description="Return only the best N (default: all).")
    return_documents: bool | None = Field(None, description="Echo each document's text (default: false; "
                                          "true for `jina-*` model names, as Jina's API does).")
    max_chunks_per_doc: int | None = Field(None, ge=1, description="Most windows scored per long document "
                                           "(capped by `serve.max_windows_per_doc`).")


class TEIRerankRequest(_Request):
    """text-embeddings-inference ``/rerank`` request."""

    query: StrictStr = Field(description="The search query (not empty).")
    texts: list[StrictStr] = Field(description="Texts to rank (1 to `serve.max_documents`).")
    raw_scores: bool = Field(False, description="Return the model's logit instead of a score in [0, 1].")
    return_text: bool = Field(False, description="Echo each text.")
    truncate: bool | None = Field(None, description="true: cut a long text to the token budget; false or "
                                  "absent: the server's `serve.long_documents` (windows, best one "
                                  "counts). A long text is never refused.")
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        "Right", description="Which end of a long text is kept: Right keeps the start, Left the end.")


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


class TEIRerankResult(BaseModel):
    index: int
    score: float
    text: str | None = None


class _V1Document(BaseModel):
    text: str


class V1RerankResult(BaseModel):
    index: int
    relevance_score: float = Field(ge=0.0, le=1.0)
    document: _V1Document | None = None


class _V1Meta(BaseModel):
    api_version: dict
    billed_units: _BilledUnits


class _Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class V1RerankResponse(BaseModel):
    id: str
    model: str
    results: list[V1RerankResult]
    meta: _V1Meta
    usage: _Usage
