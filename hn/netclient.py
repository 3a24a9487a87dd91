"""Small HTTP client helpers shared by the CLI and the capability packages."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from hn.errors import NetworkError
from hn.proto.canonical import loads_strict

DEFAULT_TIMEOUT = 10.0
MAX_DOCUMENT = 4 * 1024 * 1024


async def fetch_bytes(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int = MAX_DOCUMENT,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    try:
        async with session.get(url, headers=headers or {}, allow_redirects=False) as resp:
            body = bytearray()
            async for block in resp.content.iter_chunked(65536):
                body.extend(block)
                if len(body) > max_bytes:
                    raise NetworkError(f"{url}: response larger than {max_bytes} bytes")
            return resp.status, bytes(body), dict(resp.headers)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise NetworkError(f"{url}: {type(exc).__name__}: {exc}") from exc


async def fetch_json(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        status, body, _ = await fetch_bytes(session, url)
    if status != 200:
        raise NetworkError(f"{url}: HTTP {status}")
    return loads_strict(body)


def fetch_json_sync(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    return asyncio.run(fetch_json(url, timeout=timeout))
