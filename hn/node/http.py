"""HTTP plumbing shared by every route: JSON errors, body caps, canonical responses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.helpers import ETAG_ANY, ETag

from hn.errors import DiskError, HnError, MalformedDocument, NotFound, TooLarge, storage_failure
from hn.proto.keys import is_did

log = logging.getLogger("hn.node")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_BODY_CAP = 1024 * 1024
# A body must arrive within BODY_GRACE seconds plus its size at MIN_BODY_RATE: an honest
# client on a slow link makes it, a slowloris trickling bytes does not pin the connection.
BODY_GRACE = 20.0
MIN_BODY_RATE = 32 * 1024


def json_error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON body with a 4xx; this node's storage failing (full,
    read-only, I/O errors) a 507; any other unexpected exception is a logged 500."""
    try:
        return await handler(request)
    except DiskError as exc:
        return _storage_failed(request, exc)
    except HnError as exc:
        return json_error(exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    except Exception as exc:
        failure = storage_failure(exc)
        if failure is not None:
            return _storage_failed(request, failure)
        # A bug: log it with the traceback, answer without leaking details.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error")


def _storage_failed(request: web.Request, exc: DiskError) -> web.Response:
    """The caller did nothing wrong and may try again later; the operator's log says where
    (the answer does not: it would show the node's file paths)."""
    log.warning("node.storage_failure", extra={"hn": {"method": request.method, "path": request.path,
                                                      "error": exc.message}})
    return json_error(exc.http_status, exc.code, "this node could not use its storage; try again later")


async def read_body(request: web.Request, max_bytes: int = DEFAULT_BODY_CAP,
                    deadline: float | None = None) -> bytes:
    """The request body, refused with 413 past ``max_bytes`` (streamed, never buffered whole)
    and with 408 if it does not arrive in time."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"request body of {request.content_length} bytes exceeds the {max_bytes}-byte limit")
    expected = request.content_length if request.content_length is not None else max_bytes
    if deadline is None:
        deadline = BODY_GRACE + expected / MIN_BODY_RATE
    body = bytearray()
    try:
        async with asyncio.timeout(deadline):
            async for block in request.content.iter_chunked(1 << 16):
                body.extend(block)
                if len(body) > max_bytes:
                    raise TooLarge(f"request body exceeds the {max_bytes}-byte limit")
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"request body did not arrive within {deadline:.0f} s") from None
    return bytes(body)


def canonical_response(raw: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Signed documents are served as their exact canonical bytes."""
    return web.Response(body=raw, status=status, content_type="application/json", headers=headers)


def did_param(request: web.Request) -> str:
    """The DID a route's ``{did}`` names; a path that names none is a malformed request
    (400), said before any question of who may see or send what."""
    did = request.match_info["did"]
    if not is_did(did):
        raise MalformedDocument(f"not a did:hn DID: {did[:80]!r}")
    return did


def get_json_query(request: web.Request, name: str, default: Any = None) -> Any:
    return request.query.get(name, default)


def _etag_listed(value: str, tags: tuple[ETag, ...], *, weak: bool) -> bool:
    """RFC 9110 section 8.8.3.2: ``*`` matches anything; weak comparison ignores W/."""
    return any(tag.value == ETAG_ANY or (tag.value == value and (weak or not tag.is_weak)) for tag in tags)


def not_modified(request: web.Request, etag: str) -> bool:
    """Does the request's If-None-Match name ``etag`` (a quoted entity tag), or ``*``?"""
    tags = request.if_none_match
    return bool(tags) and _etag_listed(etag.removeprefix("W/").strip('"'), tags or (), weak=True)


async def file_response(request: web.Request, path: Path, headers: dict[str, str],
                        chunk_size: int = 256 * 1024) -> web.StreamResponse:
    """A file, with ranges and conditional requests served by aiohttp's FileResponse, but
    with its refusals (an unsatisfiable or malformed Range, a failed If-Match) answered in
    JSON like every other error instead of with an empty body."""
    try:
        info = await asyncio.to_thread(path.stat)
    except FileNotFoundError:
        raise NotFound("no such file") from None
    size = info.st_size
    # The same tag FileResponse gives the file (and compares If-Match against).
    etag = f"{info.st_mtime_ns:x}-{size:x}"
    if request.if_match is not None and not _etag_listed(etag, request.if_match, weak=False):
        return json_error(412, "precondition_failed", "If-Match names no current version of this file")
    since = request.if_unmodified_since
    if request.if_match is None and since is not None and info.st_mtime > since.timestamp():
        return json_error(412, "precondition_failed", "the file was modified after If-Unmodified-Since")
    asked = request.headers.get("Range")
    if_range = request.if_range
    if asked is not None and (if_range is None or info.st_mtime <= if_range.timestamp()):
        try:
            wanted = request.http_range
        except ValueError as exc:
            return _unsatisfiable(size, f"Range {asked[:80]!r} is not a single byte range this node serves: {exc}")
        start = wanted.start
        if start is not None:
            first = max(start + size, 0) if start < 0 and wanted.stop is None else start
            if first >= size:
                return _unsatisfiable(size, f"Range {asked[:80]!r} starts at or past the end of the "
                                            f"{size}-byte file")
    return web.FileResponse(path, chunk_size=chunk_size, headers=headers)


def _unsatisfiable(size: int, detail: str) -> web.Response:
    response = json_error(416, "range_not_satisfiable", detail)
    response.headers["Content-Range"] = f"bytes */{size}"
    return response
