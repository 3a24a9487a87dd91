"""HTTP plumbing shared by every route: JSON errors, body caps, canonical responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hn.errors import HnError, TooLarge

log = logging.getLogger("hn.node")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_BODY_CAP = 1024 * 1024


def json_error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON body with a 4xx; an unexpected exception is a logged 500."""
    try:
        return await handler(request)
    except HnError as exc:
        return json_error(exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    except Exception:  # a bug: log it with the traceback, answer without leaking details
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error")


async def read_body(request: web.Request, max_bytes: int = DEFAULT_BODY_CAP) -> bytes:
    """The request body, refused with 413 past ``max_bytes`` (streamed, never buffered whole)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"request body of {request.content_length} bytes exceeds the {max_bytes}-byte limit")
    body = bytearray()
    async for block in request.content.iter_chunked(1 << 16):
        body.extend(block)
        if len(body) > max_bytes:
            raise TooLarge(f"request body exceeds the {max_bytes}-byte limit")
    return bytes(body)


def canonical_response(raw: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Signed documents are served as their exact canonical bytes."""
    return web.Response(body=raw, status=status, content_type="application/json", headers=headers)


def get_json_query(request: web.Request, name: str, default: Any = None) -> Any:
    return request.query.get(name, default)
