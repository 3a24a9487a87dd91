"""Small HTTP client helpers shared by the CLI and the capability packages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import aiohttp
import blake3

from hn.errors import DiskError, NetworkError, VerificationError
from hn.proto.canonical import loads_strict

DEFAULT_TIMEOUT = 10.0
MAX_DOCUMENT = 4 * 1024 * 1024
# What ``response`` reads of an error answer: enough for any JSON error detail.
ERROR_BODY = 64 * 1024
# What a request to another node can raise besides an answer: the one list every caller catches.
NETWORK_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def describe(exc: BaseException) -> str:
    """A network failure in a few words, the same wherever it is reported."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.asynccontextmanager
async def response(
    session: aiohttp.ClientSession, method: str, url: str, *,
    error: Callable[[str, int, bytes], Exception] | None = None, **kwargs: Any,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """One request, its response open for the ``with`` block. A network failure, in the
    request or while the block reads, becomes a NetworkError naming the URL; with ``error``,
    a status other than 200 becomes ``error(url, status, body)``, ``body`` being at most the
    first ERROR_BODY bytes (the peer chooses how long an error body is)."""
    try:
        async with session.request(method, url, **kwargs) as resp:
            if error is not None and resp.status != 200:
                raise error(url, resp.status, await _head_of(resp, ERROR_BODY))
            yield resp
    except NETWORK_ERRORS as exc:
        raise NetworkError(f"{url}: {describe(exc)}") from exc


async def _head_of(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    while len(body) < limit:
        block = await resp.content.read(limit - len(body))
        if not block:
            break
        body += block
    return bytes(body)


async def fetch_bytes(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int = MAX_DOCUMENT,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    async with response(session, "GET", url, headers=headers or {}, allow_redirects=False) as resp:
        body = bytearray()
        async for block in resp.content.iter_chunked(65536):
            body.extend(block)
            if len(body) > max_bytes:
                raise NetworkError(f"{url}: response larger than {max_bytes} bytes")
        return resp.status, bytes(body), dict(resp.headers)


async def fetch_json(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        status, body, _ = await fetch_bytes(session, url)
    if status != 200:
        raise NetworkError(f"{url}: HTTP {status}")
    return loads_strict(body)


def fetch_json_sync(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    return asyncio.run(fetch_json(url, timeout=timeout))


async def copy_checked(
    content: aiohttp.StreamReader, out: BinaryIO, size: int, digest: str, *, too_large: str, mismatch: str,
    stored: str, block: int = 1 << 16, progress: Callable[[int], None] | None = None,
) -> None:
    """Stream a body to ``out``, refusing it past ``size`` bytes or unless its BLAKE3 is ``digest``.

    Nothing is trusted before the last byte is checked: callers write to a temp file and
    keep it only when this returns. A write that fails is this machine's disk, not the
    network: it raises DiskError, "could not store ``stored``: <reason>".
    """
    hasher = blake3.blake3()
    got = 0
    async for chunk in content.iter_chunked(block):
        got += len(chunk)
        if got > size:
            raise VerificationError(too_large)
        hasher.update(chunk)
        try:
            out.write(chunk)
        except OSError as exc:
            raise DiskError(f"could not store {stored}: {exc.strerror or exc}") from exc
        if progress:
            progress(len(chunk))
    if got != size or hasher.hexdigest() != digest:
        raise VerificationError(mismatch)
