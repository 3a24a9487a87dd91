"""Small HTTP client helpers shared by the CLI and the capability packages."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import aiohttp
import blake3

from hn.errors import DiskError, HnError, NetworkError, VerificationError
from hn.proto.canonical import loads_strict

DEFAULT_TIMEOUT = 10.0
MAX_DOCUMENT = 4 * 1024 * 1024
# What ``response`` reads of an error answer: enough for any JSON error detail.
ERROR_BODY = 64 * 1024
# What a request to another node can raise besides an answer: the one list every caller catches.
NETWORK_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


# What a failed connection or exchange says, by errno, in the words a user reads.
_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "the connection was reset",
    errno.ECONNABORTED: "the connection was aborted",
    errno.EPIPE: "the connection was closed",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTDOWN: "host is down",
    errno.EADDRNOTAVAIL: "address not available",
}


def _address(url: str) -> str:
    """What a user gives as a node's address: ``url`` without the path and query the
    client put after it (``notaurl`` of ``notaurl/backup?owner=…``)."""
    scheme, sep, rest = url.partition("://")
    head = (rest if sep else scheme).split("/", 1)[0].split("?", 1)[0]
    return f"{scheme}{sep}{head}" if sep else head or url


def _bad_url(url: str) -> str:
    if url.lower().startswith(("http:", "https:")):
        return f"{_address(url)} is not a valid URL"
    return f"{_address(url)} is not an http(s) URL"


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc) or type(exc).__name__).lower()


def _cannot_connect(exc: aiohttp.ClientConnectorError) -> str:
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    where = f"cannot connect to {host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"{where}: host name not found"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"{where}: its TLS certificate was not accepted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"{where}: the TLS handshake failed ({exc.os_error.strerror or exc.os_error})"
    return f"{where}: {_reason(exc.os_error)}"


def describe(exc: BaseException) -> str:
    """A network failure in a few words, the same wherever it is reported."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _cannot_connect(exc)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return _bad_url(str(exc.args[0]) if exc.args else "")
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def explain(url: str, exc: BaseException) -> str:
    """The one line a user reads for a request to ``url`` that failed with ``exc`` (one of
    NETWORK_ERRORS): what was wrong in plain words, not the client library's text."""
    if isinstance(exc, aiohttp.ClientConnectorError):  # before OSError: it is one
        return _cannot_connect(exc)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return _bad_url(url)
    if isinstance(exc, TimeoutError):  # the total limit, or a connect or read limit
        return f"{url}: timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{url}: the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"{url}: the answer was cut short"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{url}: {_reason(exc)}"
    return f"{url}: {describe(exc)}"


def _one_line(text: str, limit: int) -> str:
    """``text`` with control characters and runs of white space as single spaces, cut to ``limit``."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


def error_detail(body: bytes) -> str:
    """What an error answer says, in one line: ``error: detail`` from an hn node's JSON
    body; a server that is not an hn node (an HTML error page, say) is named as such
    instead of having its page quoted."""
    try:
        doc = loads_strict(body, max_bytes=ERROR_BODY)
    except (HnError, RecursionError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        # One line of bounded length, whatever the peer put in it.
        error, detail = _one_line(doc["error"], 64), _one_line(str(doc.get("detail") or ""), 500)
        return f"{error}: {detail}" if detail else error
    return "(the answer is not an hn node's JSON error: is this the address of an hn node?)"


@contextlib.asynccontextmanager
async def response(
    session: aiohttp.ClientSession, method: str, url: str, *,
    error: Callable[[str, int, bytes], Exception] | None = None, **kwargs: Any,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """One request, its response open for the ``with`` block. A network failure, in the
    request or while the block reads, becomes a NetworkError saying what failed
    (``explain``); with ``error``, a status other than 200 becomes ``error(url, status,
    body)``, ``body`` being at most the first ERROR_BODY bytes (the peer chooses how long
    an error body is)."""
    try:
        async with session.request(method, url, **kwargs) as resp:
            if error is not None and resp.status != 200:
                raise error(url, resp.status, await _head_of(resp, ERROR_BODY))
            yield resp
    except NETWORK_ERRORS as exc:
        raise NetworkError(explain(url, exc)) from exc


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
