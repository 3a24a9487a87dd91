"""HTTP plumbing shared by every route: JSON errors, body caps, canonical responses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hn.errors import DiskError, HnError, TooLarge, storage_failure

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


def get_json_query(request: web.Request, name: str, default: Any = None) -> Any:
    return request.query.get(name, default)
