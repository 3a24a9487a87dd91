"""Network failures are reported the same way by every client: netclient.describe."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from hn.errors import NetworkError
from hn.netclient import NETWORK_ERRORS, describe, response
from tests.support import free_port


def test_describe_names_the_failure() -> None:
    assert describe(TimeoutError()) == "timed out"
    assert describe(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
    assert describe(aiohttp.ServerDisconnectedError()).startswith("ServerDisconnectedError")
    assert all(issubclass(kind, BaseException) for kind in NETWORK_ERRORS)


async def test_a_silent_server_and_a_closed_port_become_network_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
            with pytest.raises(NetworkError, match=rf"127.0.0.1:{port}/x: timed out$"):
                async with response(session, "GET", f"http://127.0.0.1:{port}/x"):
                    pass
            closed = free_port()
            with pytest.raises(NetworkError, match=rf"^cannot connect to 127.0.0.1:{closed}: connection refused$"):
                async with response(session, "GET", f"http://127.0.0.1:{closed}/x"):
                    pass
    finally:
        server.close()
        await server.wait_closed()


async def test_an_error_answer_is_read_only_as_far_as_its_head() -> None:
    """A peer that answers an error with a huge body gets only ERROR_BODY bytes of it read."""
    from aiohttp import web

    from hn.netclient import ERROR_BODY

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=503)
        await resp.prepare(request)
        for _ in range(64):  # 4 MiB, in pieces
            await resp.write(b"x" * (1 << 16))
        return resp

    app = web.Application()
    app.router.add_get("/x", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    seen: list[int] = []

    def error(url: str, status: int, body: bytes) -> Exception:
        seen.append(len(body))
        return NetworkError(f"{url}: HTTP {status}")

    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(NetworkError, match="HTTP 503"):
                async with response(session, "GET", f"http://127.0.0.1:{port}/x", error=error):
                    pass
    finally:
        await runner.cleanup()
    assert seen == [ERROR_BODY]


def test_an_error_answer_is_told_in_one_line_and_a_page_is_never_quoted() -> None:
    from hn.netclient import error_detail

    assert error_detail(b'{"detail":"backup is meant for another node","error":"forbidden"}') == \
        "forbidden: backup is meant for another node"
    assert error_detail(b'{"error":"busy"}') == "busy"
    page = b"<!DOCTYPE HTML>\n<html><body><h1>Error response</h1><p>Error code: 501</p>" + b"x" * 5000
    for body in (page, b"", b"[1]", b'{"detail":"no error field"}', b"\xff\xfe"):
        said = error_detail(body)
        assert said == "(the answer is not an hn node's JSON error: is this the address of an hn node?)", body


def test_what_a_peer_says_in_an_error_stays_one_bounded_line() -> None:
    from hn.netclient import error_detail

    body = json.dumps({"error": "x" * 200, "detail": "line one\nline two\x1b[31m\tred" + "y" * 900}).encode()
    said = error_detail(body)
    assert "\n" not in said and "\x1b" not in said and "\t" not in said
    assert said.startswith("x" * 64 + ": line one line two [31m red") and len(said) == 64 + 2 + 500
