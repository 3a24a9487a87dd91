"""A fault-injecting HTTP proxy in front of a real node: it forwards every request and lets a
test rewrite responses (tampered slices, substituted presences, altered artefacts) or hold
requests unanswered until it releases them (a peer stuck mid-download)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import aiohttp
from aiohttp import web

Mutator = Callable[[str, int, bytes], tuple[int, bytes]]


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mutate: Mutator = lambda path, status, body: (status, body)
        self.stall: Callable[[str], bool] = lambda path: False  # hold these paths until release()
        self.stalled: list[str] = []  # paths of the requests held so far
        self._released: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.stall(request.path):
            assert self._released is not None
            self.stalled.append(request.path)
            await self._released.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, self.upstream + str(request.rel_url), data=body,
                                       headers=headers, allow_redirects=False) as resp:
                payload = await resp.read()
                status, payload = self.mutate(request.path, resp.status, payload)
                out_headers = {k: v for k, v in resp.headers.items()
                               if k.lower() in ("etag", "content-type", "x-hn-digest")}
                return web.Response(status=status, body=payload, headers=out_headers)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._released = asyncio.Event()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def start(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def release(self) -> None:
        """Answer the held requests, and hold no more."""
        self.stall = lambda path: False
        if self._released is not None:
            self.loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        self.release()

        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
