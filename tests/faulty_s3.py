"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a local S3-compatible server: a share of
requests is answered with 503 SlowDown (S3's throttling reply), has its connection reset (before
any reply, or halfway through the body of a download) or stalls until the client gives up; the
rest are forwarded unchanged (the signed headers too). ``outage_s``: every request in the first
seconds after the first one is answered 503 (longer than the SDK's own retries last); ``fail``:
every request whose path contains a string is — an outage that does not pass.

Example::

    with FaultyS3Proxy(upstream, slowdown=0.1, reset=0.05, cut=0.05, stall=0.02) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from zelo_ray.judges.fake_server import loop_in_thread

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message><RequestId>zelo-test</RequestId></Error>')
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}


class FaultyS3Proxy:
    def __init__(self, upstream: str, *, slowdown: float = 0.0, reset: float = 0.0, cut: float = 0.0,
                 stall: float = 0.0, stall_s: float = 8.0, outage_s: float = 0.0, fail: str | None = None,
                 seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.shares = {"slowdown": slowdown, "reset": reset, "cut": cut, "stall": stall}
        self.stall_s, self.outage_s, self.fail = stall_s, outage_s, fail
        self._first: float | None = None
        self._rng = random.Random(seed)
        self.outcomes: Counter[str] = Counter()
        self.url = ""
        self._loop = self._thread = self._runner = self._client = None

    def __enter__(self) -> "FaultyS3Proxy":
        self._loop, self._thread = loop_in_thread(self._serve, "faulty-s3-proxy")
        return self

    def __exit__(self, *exc) -> None:
        async def close():
            await self._client.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self) -> None:
        import aiohttp
        from aiohttp import web

        self._client = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    def _draw(self, path: str) -> str:
        now = time.monotonic()
        self._first = self._first or now
        if (self.fail is not None and self.fail in path) or now - self._first < self.outage_s:
            return "outage"
        u, acc = self._rng.random(), 0.0
        for name, share in self.shares.items():
            acc += share
            if u < acc:
                return name
        return "ok"

    async def _handle(self, request):
        from aiohttp import web

        transport = request.transport  # kept: once the connection drops, the request forgets it
        body = await request.read()
        fault = self._draw(request.path_qs)
        self.outcomes[fault] += 1
        if fault in ("slowdown", "outage"):
            return web.Response(status=503, body=SLOWDOWN, content_type="application/xml")
        if fault == "reset":
            transport.abort()
            return web.Response(status=500)
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
            transport.abort()
            return web.Response(status=500)
        async def chunked():  # an aws-chunked body must reach the server as HTTP chunks, as it was sent
            yield body

        data = chunked() if request.headers.get("Transfer-Encoding", "").lower() == "chunked" else body
        async with self._client.request(request.method, self.upstream + request.path_qs, data=data,
                                        headers={k: v for k, v in request.headers.items() if k.lower() not in _HOP},
                                        allow_redirects=False) as up:
            payload = await up.read()
            headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
        if fault == "cut" and request.method == "GET" and len(payload) > 1:
            # the headers promise the whole body; half of it arrives, then the connection drops
            resp = web.StreamResponse(status=up.status, headers=headers)
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
            transport.abort()
            return resp
        if request.method == "HEAD" and "Content-Length" in up.headers:
            headers["Content-Length"] = up.headers["Content-Length"]  # the object's size, without its body
            return web.Response(status=up.status, headers=headers)
        return web.Response(status=up.status, body=payload, headers=headers)
