"""A request that fails is one plain line, a NetworkError (the class the CLI's retry hints
go by), never the HTTP client's own exception text."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from hn.errors import NetworkError
from hn.netclient import describe, explain, fetch_json, response
from tests.support import free_port


async def failure(url: str, **timeout: float) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(**timeout)) as session:
        with pytest.raises(NetworkError) as caught:
            async with response(session, "GET", url):
                pass
    return caught.value.message


def key(host: str, port: int) -> ConnectionKey:
    return ConnectionKey(host, port, False, True, None, None, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("url", "message"), [
    ("notaurl/backup?owner=did:hn:x", "notaurl is not an http(s) URL"),
    ("ftp://example.org/backup?owner=did:hn:x", "ftp://example.org is not an http(s) URL"),
    ("http:/backup", "http: is not a valid URL"),
    ("http://[::1/backup", "http://[::1 is not a valid URL"),
])
async def test_a_url_that_is_not_http_says_so(url: str, message: str) -> None:
    assert await failure(url) == message


async def test_a_closed_port_is_connection_refused() -> None:
    port = free_port()
    assert await failure(f"http://127.0.0.1:{port}/backup?owner=x") == f"cannot connect to 127.0.0.1:{port}: connection refused"
    # The same words where a failure is only described (relay pushes, logs).
    with pytest.raises(NetworkError) as caught:
        await fetch_json(f"http://127.0.0.1:{port}/x")
    assert caught.value.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert describe(caught.value.__cause__) == caught.value.message


async def test_a_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers, until the client goes away
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"http://127.0.0.1:{port}/x"
        assert await failure(url, total=0.3) == f"{url}: timed out"
        assert await failure(url, sock_read=0.3) == f"{url}: timed out"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_hangs_up_says_so() -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(rude, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"http://127.0.0.1:{port}/x"
        assert await failure(url) == f"{url}: the server closed the connection without answering"
    finally:
        server.close()
        await server.wait_closed()


def test_names_that_do_not_resolve_and_other_connect_failures() -> None:
    # Built by hand: the tests reach no network beyond 127.0.0.1.
    dns = aiohttp.ClientConnectorDNSError(key("nowhere.invalid", 443), socket.gaierror(-2, "Name or service not known"))
    assert explain("https://nowhere.invalid/x", dns) == "cannot connect to nowhere.invalid:443: host name not found"
    unreachable = aiohttp.ClientConnectorError(key("::1", 8080), OSError(113, "No route to host"))
    assert explain("http://[::1]:8080/x", unreachable) == "cannot connect to [::1]:8080: host unreachable"
    odd = aiohttp.ClientConnectorError(key("127.0.0.1", 9), OSError(5, "Input/output error"))
    assert describe(odd) == "cannot connect to 127.0.0.1:9: input/output error"
    reset = aiohttp.ClientOSError(104, "Connection reset by peer")
    assert explain("http://127.0.0.1:9/x", reset) == "http://127.0.0.1:9/x: the connection was reset"
    assert explain("http://127.0.0.1:9/x", aiohttp.ClientPayloadError("Response payload is not completed")) == \
        "http://127.0.0.1:9/x: the answer was cut short"
