"""A judge behind any OpenAI-compatible chat endpoint (``openai.AsyncOpenAI``).

OpenAI itself, the Gemini and Anthropic compatibility endpoints, ``vllm serve`` and llama.cpp's
server all take the same request. Many calls are in flight at once on one event loop, under
the endpoint's limits (:mod:`zelo_ray.judges.limits`). The client's own retries are off: this
module retries 429, 5xx, timeouts, connection errors and malformed response bodies with
exponential backoff and jitter, honours ``Retry-After``, and after ``max_retries`` records a
missing vote with the last error. A reply without a usable score is a missing vote at once
(asking again at temperature 0 would get the same reply).

If the endpoint rejects structured output (HTTP 400 naming ``response_format``), the judge
falls back to JSON mode and then to plain text for the rest of the run; the parser reads all
three.

The API key is read from the environment variable named in the config, inside the process that
makes the calls, and is scrubbed from every error message this module records.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time

from zelo_ray.judges.base import CallBatch, JudgeSetupError, ResultBatch
from zelo_ray.judges.limits import EndpointLimiter
from zelo_ray.retry import backoff_delay, retry_after_seconds
from zelo_ray.judges.parse import ScoreParseError, parse_score
from zelo_ray.judges.prompt import build_messages, response_format

__all__ = ["JudgeSetupError", "OpenAIJudge", "read_api_key"]

log = logging.getLogger(__name__)

_FALLBACK = {"json_schema": "json_object", "json_object": "text"}


def read_api_key(name: str, api_key_env: str | None) -> str:
    if api_key_env is None:
        return "no-key"  # the client insists on a value; local servers ignore it
    key = os.environ.get(api_key_env)
    if not key:
        raise JudgeSetupError(f"judge {name!r}: environment variable {api_key_env} is not set "
                              "(api_key_env names the variable that holds the key)")
    return key


def _retry_after(exc) -> float | None:
    return retry_after_seconds(getattr(getattr(exc, "response", None), "headers", None))


class OpenAIJudge:
    def __init__(self, cfg, *, limiter=None) -> None:
        """``cfg`` is a :class:`zelo_ray.config.OpenAIJudgeConfig`; ``limiter`` holds the endpoint's
        limits when several caller processes talk to it (one shared book,
        :mod:`zelo_ray.judges.shared_limits`); without one this process keeps them itself."""
        from openai import AsyncOpenAI

        self.cfg = cfg
        self.name, self.model = cfg.name, cfg.model
        self._key = read_api_key(cfg.name, cfg.api_key_env)
        self.client = AsyncOpenAI(api_key=self._key, base_url=cfg.base_url, timeout=cfg.timeout_s,
                                  max_retries=0)
        self.limiter = limiter or EndpointLimiter(cfg.max_concurrency, cfg.requests_per_minute,
                                                  cfg.tokens_per_minute)
        self.fmt = cfg.response_format
        self._rng = random.Random()

    def _redact(self, message: str) -> str:
        if self._key and self._key != "no-key":
            message = message.replace(self._key, "***")
        return message[:500]

    async def judge_batch(self, calls: CallBatch, on_answer=None) -> ResultBatch:
        out = ResultBatch.empty(len(calls))
        await asyncio.gather(*(self._one(i, calls.texts(i), int(calls.key[i]), out, on_answer)
                               for i in range(len(calls))))
        return out

    async def _one(self, i: int, texts, key: int, out: ResultBatch, on_answer=None) -> None:
        await self._ask(i, texts, key, out)
        if on_answer is not None:
            on_answer(i, out)

    async def _ask(self, i: int, texts, key: int, out: ResultBatch) -> None:
        """Ask until an answer, a final error or ``max_retries`` retries; record it in ``out``."""
        cfg = self.cfg
        attempt = 0
        while True:
            kwargs, estimate, sent_fmt = self._request(texts, key)
            out.attempts[i] += 1
            async with self.limiter.slot(estimate):
                sent = time.perf_counter()
                resp, failure = await self._send(kwargs, sent_fmt)
            if resp is None and failure is None:  # fell back to another response format
                out.attempts[i] -= 1
                continue
            out.latency_s[i] = time.perf_counter() - sent
            if failure is None:
                self._record(i, resp, estimate, out)
                return
            error, retryable, retry_after = failure
            self.limiter.settle(estimate, 0.0)
            if not retryable or attempt >= cfg.max_retries:
                suffix = f" (gave up after {attempt} retries)" if retryable else ""
                out.error[i] = self._redact(error + suffix)
                return
            if retry_after is not None and error.startswith("HTTP 429"):
                self.limiter.pause(retry_after)
            await asyncio.sleep(backoff_delay(attempt, base=cfg.backoff_s, cap=cfg.backoff_max_s,
                                              u=self._rng.random(), retry_after=retry_after))
            attempt += 1

    def _request(self, texts, key: int) -> tuple[dict, float, str]:
        """The chat request in the current response format, its token estimate and that format."""
        query, first, second, query_b = texts
        cfg, sent_fmt = self.cfg, self.fmt
        messages = build_messages(query, first, second, query_b=query_b,
                                  max_doc_chars=cfg.max_doc_chars, fmt=sent_fmt)
        estimate = sum(len(m["content"]) for m in messages) / 4 + min(cfg.max_tokens, 256)
        kwargs = dict(model=cfg.model, messages=messages, max_tokens=cfg.max_tokens,
                      temperature=cfg.temperature)
        fmt = response_format(sent_fmt)
        if fmt is not None:
            kwargs["response_format"] = fmt
        if cfg.extra_body:
            kwargs["extra_body"] = cfg.extra_body
        # The cache key travels with the request so that server logs (and our tests) can
        # tell a repeated question from a new one.
        kwargs["extra_headers"] = {"X-Zelo-Call": str(key)}
        return kwargs, estimate, sent_fmt

    async def _send(self, kwargs: dict, sent_fmt: str):
        """One request: ``(response, None)``, or ``(None, (error, retryable, retry_after))``, or
        ``(None, None)`` when the endpoint rejected the response format and the judge fell back."""
        import openai

        try:
            return await self.client.chat.completions.create(**kwargs), None
        except openai.RateLimitError as exc:
            return None, (f"HTTP 429: {exc.message}", True, _retry_after(exc))
        except openai.BadRequestError as exc:
            if "response_format" in str(exc.message) and sent_fmt in _FALLBACK:
                if self.fmt == sent_fmt:  # calls in flight may all see the same 400
                    log.warning("judge %s: endpoint rejected response_format=%s; falling back "
                                "to %s", self.name, sent_fmt, _FALLBACK[sent_fmt])
                    self.fmt = _FALLBACK[sent_fmt]
                return None, None
            return None, (f"HTTP 400: {exc.message}", False, None)
        except openai.APIStatusError as exc:
            retryable = exc.status_code >= 500 or exc.status_code in (408, 409)
            return None, (f"HTTP {exc.status_code}: {exc.message}", retryable, _retry_after(exc))
        except openai.APITimeoutError:
            return None, (f"timeout after {self.cfg.timeout_s:g}s", True, None)
        except openai.APIConnectionError as exc:
            return None, (f"connection error: {exc}", True, None)
        except (ValueError, openai.APIResponseValidationError) as exc:
            # A 200 whose body is not the expected JSON: a server-side glitch.
            return None, (f"malformed response: {exc}", True, None)

    def _record(self, i: int, resp, estimate: float, out: ResultBatch) -> None:
        """An answer's tokens and score (or why its reply could not be read)."""
        usage = getattr(resp, "usage", None)
        actual_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        actual_out = int(getattr(usage, "completion_tokens", 0) or 0)
        out.input_tokens[i] += actual_in
        out.output_tokens[i] += actual_out
        self.limiter.settle(estimate, actual_in + actual_out)
        choices = getattr(resp, "choices", None) or []
        content = choices[0].message.content if choices and choices[0].message else None
        try:
            out.score[i] = parse_score(content)
        except ScoreParseError as exc:
            out.error[i] = f"unparseable reply: {exc}"

    async def aclose(self) -> None:
        await self.client.close()
