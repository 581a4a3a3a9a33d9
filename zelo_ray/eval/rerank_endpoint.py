"""A live rerank endpoint as a system under audit: for each query, send a base system's top
documents and rank them by the scores that come back.

Two request shapes, chosen by the URL's path:

* ``…/v1/rerank``, ``…/v2/rerank``, ``…/models/rerank`` — Cohere-style (Cohere, Jina, Voyage,
  ZeroEntropy, `zelo serve`): ``{model, query, documents, top_n}`` → ``results`` (or ``data``)
  of ``{index, relevance_score}``;
* any other ``…/rerank`` — Hugging Face TEI: ``{query, texts}`` → ``[{index, score}]``.

429, 5xx, timeouts and refused connections are retried with backoff (or after the server's
``Retry-After`` when it asks for longer); a query whose request still fails is returned as a
problem (and ranks nothing for that system), never guessed.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from zelo_ray.retry import backoff_delay, retry_after_seconds

__all__ = ["EndpointError", "rerank_with_endpoint", "request_shape"]

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    pass


def request_shape(url: str) -> str:
    """'cohere' or 'tei' from the URL's path."""
    path = urlparse(url).path.rstrip("/")
    if not path.endswith("/rerank"):
        raise ValueError(f"{url}: a rerank endpoint's URL ends in /rerank (e.g. http://host/v2/rerank)")
    return "cohere" if path.endswith(("/v1/rerank", "/v2/rerank", "/models/rerank")) else "tei"


def _order(body, n: int) -> list[int]:
    items = body if isinstance(body, list) else (body.get("results") or body.get("data")
                                                 if isinstance(body, dict) else None)
    if not isinstance(items, list):
        raise EndpointError(f"unexpected response: {str(body)[:200]}")
    scored = []
    for it in items:
        try:
            i = int(it["index"])
            s = float(it["relevance_score"] if "relevance_score" in it else it["score"])
        except (KeyError, TypeError, ValueError):
            raise EndpointError(f"unexpected result item: {str(it)[:200]}") from None
        if not 0 <= i < n:
            raise EndpointError(f"result index {i} is outside the {n} documents sent")
        scored.append((-s, i))
    ranked = [i for _, i in sorted(scored)]
    seen = set(ranked)
    return ranked + [i for i in range(n) if i not in seen]  # documents the endpoint left out keep their base order


def _post(url: str, payload: dict, *, api_key: str | None, timeout_s: float, retries: int):
    data = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    last, wait = "", None
    for attempt in range(retries + 1):
        if attempt:
            # the server's Retry-After (an overloaded `zelo serve`, TEI or Cohere sends one) wins
            # over the backoff when longer
            time.sleep(backoff_delay(attempt - 1, base=0.5, cap=8.0, u=random.random(), retry_after=wait))
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=timeout_s) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200].decode('utf-8', 'replace')}"
            wait = retry_after_seconds(dict(exc.headers.items()) if exc.headers else None)
            if exc.code not in _RETRY_STATUS:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last, wait = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", None
        except json.JSONDecodeError as exc:
            last = f"response is not JSON ({exc.msg})"
            break
    raise EndpointError(f"{url}: {last} (after {attempt + 1} attempts)")


def rerank_with_endpoint(url: str, queries: Mapping[str, str], base: Mapping[str, Sequence[str]],
                         doc_text: Callable[[str], str], *, depth: int, model: str = "rerank",
                         api_key: str | None = None, concurrency: int = 8, timeout_s: float = 60.0,
                         retries: int = 3) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """``(run, problems)``: each query's reordered top ``depth`` of ``base``, and (query id, error)
    for the queries the endpoint could not answer."""
    shape = request_shape(url)

    def one(q: str):
        docs = list(base.get(q, ()))[:depth]
        if not docs:
            return q, [], None
        texts = [doc_text(d) for d in docs]
        if shape == "cohere":
            payload = {"model": model, "query": queries[q], "documents": texts, "top_n": len(texts)}
        else:
            payload = {"query": queries[q], "texts": texts}
        try:
            order = _order(_post(url, payload, api_key=api_key, timeout_s=timeout_s, retries=retries), len(docs))
        except EndpointError as exc:
            return q, None, str(exc)
        return q, [docs[i] for i in order], None

    run, problems = {}, []
    with ThreadPoolExecutor(concurrency) as pool:
        for q, ranked, error in pool.map(one, list(queries)):
            if error is None:
                run[q] = ranked
            else:
                problems.append((q, error))
    return run, problems
