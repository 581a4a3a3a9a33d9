"""A local OpenAI-compatible chat server for tests and benchmarks: fixed latency, a concurrency
cap, and injected faults at configurable rates. It never judges anything — its score is a hash
of the question — and it listens on 127.0.0.1 only.

It counts requests per ``X-Zelo-Call`` header (the caller's cache key), so a test can prove
which questions were asked, and how often. With ``requests_per_minute`` it enforces a rate the
way providers do (a token bucket holding ``burst_s`` seconds of it): a request over the rate gets
a 429 with the wait in ``Retry-After``, and ``arrivals`` keeps every request's time.

Example::

    >>> from zelo_ray.judges.fake_server import FakeJudgeServer, Faults
    >>> with FakeJudgeServer(latency_s=0.01, faults=Faults(http_500=0.1)) as server:
    ...     url = server.base_url          # http://127.0.0.1:<port>/v1
    >>> server.total
    0
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

__all__ = ["Faults", "FakeJudgeServer"]


@dataclass
class Faults:
    """Share of requests answered with each fault (the rest succeed)."""

    http_429: float = 0.0
    """429 with a ``Retry-After`` header."""
    http_429_bare: float = 0.0
    """429 without ``Retry-After``."""
    http_500: float = 0.0
    timeout: float = 0.0
    """Answer only after ``timeout_sleep_s`` (longer than the client's timeout)."""
    malformed_json: float = 0.0
    """HTTP 200 with a body that is not JSON."""
    out_of_range: float = 0.0
    """A well-formed reply whose score is outside [-1, 1]."""
    empty: float = 0.0
    """A reply with empty content."""

    def pick(self, u: float) -> str | None:
        acc = 0.0
        for name in ("http_429", "http_429_bare", "http_500", "timeout", "malformed_json",
                     "out_of_range", "empty"):
            acc += getattr(self, name)
            if u < acc:
                return name
        return None


def loop_in_thread(serve, name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new event loop running in a daemon thread, once the coroutine ``serve()`` (which starts
    a server on it) has finished: a local server for tests and benchmarks."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} did not start")
    return loop, thread


class FakeJudgeServer:
    def __init__(self, *, latency_s: float = 0.0, concurrency: int | None = None,
                 faults: Faults | None = None, seed: int = 0, timeout_sleep_s: float = 3.0,
                 retry_after_s: float = 0.2, reply: str = "json", reject_json_schema: bool = False,
                 api_key: str | None = None, requests_per_minute: float | None = None,
                 burst_s: float = 2.0) -> None:
        self.latency_s, self.concurrency = latency_s, concurrency
        self.rate = requests_per_minute / 60.0 if requests_per_minute else None
        self._capacity = max(1.0, (self.rate or 0.0) * burst_s)
        self._level, self._refilled = self._capacity, time.monotonic()
        self.arrivals: list[float] = []
        """Monotonic time of every request (kept with ``requests_per_minute``)."""
        self.faults = faults or Faults()
        self.timeout_sleep_s, self.retry_after_s = timeout_sleep_s, retry_after_s
        self.reply, self.reject_json_schema, self.api_key = reply, reject_json_schema, api_key
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        """Requests per X-Zelo-Call header value."""
        self.answered: Counter[str] = Counter()
        """HTTP 200 replies with a valid score, per X-Zelo-Call."""
        self.outcomes: Counter[str] = Counter()
        self.total = 0
        self.inflight = self.max_inflight = 0
        self.first_request_at: float | None = None
        """Monotonic time of the first request and of the last reply: the window in which the
        server was busy, so a benchmark can leave the client's start-up out."""
        self.last_reply_at: float | None = None
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeJudgeServer":
        self._loop, self._thread = loop_in_thread(self._serve, "fake-judge-server")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "FakeJudgeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._sem = asyncio.Semaphore(self.concurrency) if self.concurrency else None

    # -- requests --------------------------------------------------------------------------
    async def _handle(self, request):
        if self._sem is None:
            return await self._answer(request)
        async with self._sem:
            return await self._answer(request)

    async def _answer(self, request):
        call = request.headers.get("X-Zelo-Call", "")
        fault, wait = self._arrive(call)
        try:
            if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return self._error(401, "bad key", "401")
            body = await request.json()
            if self.reject_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return self._error(400, "response_format json_schema is not supported", "400")
            if wait is not None:
                return self._error(429, "rate limit exceeded", "429_rate", retry_after=f"{wait:.3f}")
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return await self._faulty(fault) or self._completion(body, fault, call)
        finally:
            with self._lock:
                self.inflight -= 1
                self.last_reply_at = time.monotonic()

    def _arrive(self, call: str) -> tuple[str | None, float | None]:
        """Count the request; the fault it draws and, over the rate, the seconds to wait."""
        with self._lock:
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            self.total += 1
            self.calls[call] += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            return self.faults.pick(self._rng.random()), self._over_rate()

    def _error(self, status: int, message: str, outcome: str, *, retry_after: str | None = None):
        from aiohttp import web

        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return self._count(web.json_response({"error": {"message": message}}, status=status,
                                             headers=headers), outcome)

    async def _faulty(self, fault: str | None):
        """The reply of a transport-level fault, or None when the request gets a completion."""
        from aiohttp import web

        if fault == "http_429":
            return self._error(429, "slow down", fault, retry_after=str(self.retry_after_s))
        if fault == "http_429_bare":
            return self._error(429, "slow down", fault)
        if fault == "http_500":
            return self._error(500, "boom", fault)
        if fault == "timeout":
            await asyncio.sleep(self.timeout_sleep_s)
            return self._error(504, "late", fault)
        if fault == "malformed_json":
            return self._count(web.Response(text='{"id": "x", "choices": [', content_type="application/json"), fault)
        return None

    def _completion(self, body: dict, fault: str | None, call: str):
        """A chat completion whose score is a hash of the prompt (content-level faults applied)."""
        from aiohttp import web

        user = "".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
        h = int.from_bytes(hashlib.blake2b(user.encode(), digest_size=8).digest(), "little")
        score = round((h % 2001) / 1000.0 - 1.0, 3)
        if fault == "out_of_range":
            score = 1.0 + (h % 9 + 1) / 10.0
        if fault == "empty":
            content = ""
        elif self.reply == "text":
            content = f"Document A seems fine.\n<score>{score}</score>"
        else:
            content = json.dumps({"reasoning": "fake judge", "score": score})
        if fault is None:
            with self._lock:
                self.answered[call] += 1
        return self._count(web.json_response({
            "id": f"fake-{self.total}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": 12,
                      "total_tokens": len(user) // 4 + 12}}), fault or "ok")

    def _over_rate(self) -> float | None:
        """Under the lock: None when the request is within the rate, else seconds to wait."""
        if self.rate is None:
            return None
        now = time.monotonic()
        self.arrivals.append(now)
        self._level = min(self._capacity, self._level + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._level >= 1.0:
            self._level -= 1.0
            return None
        return (1.0 - self._level) / self.rate

    def _count(self, response, outcome: str):
        with self._lock:
            self.outcomes[outcome] += 1
        return response


def _main(argv: list[str] | None = None) -> None:
    """Run a server in its own process (benchmarks keep it off the caller's GIL)."""
    import argparse

    p = argparse.ArgumentParser(description="fake OpenAI-compatible judge server (127.0.0.1)")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--http-500", type=float, default=0.0)
    p.add_argument("--http-429", type=float, default=0.0)
    p.add_argument("--retry-after", type=float, default=0.2)
    a = p.parse_args(argv)
    server = FakeJudgeServer(latency_s=a.latency, concurrency=a.concurrency, retry_after_s=a.retry_after,
                             faults=Faults(http_500=a.http_500, http_429=a.http_429)).start()
    print(server.base_url, flush=True)
    import signal

    stop = threading.Event()
    # Explicit handlers: a background job's SIGINT may be ignored (inherited SIG_IGN).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        window = None
        if server.first_request_at is not None and server.last_reply_at is not None:
            window = server.last_reply_at - server.first_request_at
        print(json.dumps({"total": server.total, "outcomes": dict(server.outcomes),
                          "max_inflight": server.max_inflight, "busy_s": window}), flush=True)
        server.stop()


if __name__ == "__main__":
    _main()
