"""Talk to a friend's node: push a backup (signed, restartable), list, fetch headers and payloads.

Upload protocol (spec/backup@1.md): ``POST /backup`` with the header as body opens or
resumes an upload and answers how many payload bytes the node already holds; then
``PUT /backup/{id}/blob?offset=N`` sends the payload in segments, each signed. The node
keeps nothing until the whole payload's digest equals the signed header's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from hn.errors import HnError, NetworkError, NotFound, VerificationError
from hn.netclient import copy_checked, error_detail, response
from hn.node.httpsig import sign_request
from hn.proto import backup as proto
from hn.proto.canonical import canonical, loads_strict
from hn.proto.keys import IdentityKeys
from hn.vault import atomic

SEGMENT = 8 << 20
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
# Error answers that a later attempt can get past: a request that timed out or came too
# early or too often (408, 425, 429), an upload that moved on meanwhile (409: the next
# attempt asks the node where it stands), and a signature the node cannot check yet (401:
# a key it has not learnt, or clocks apart). Every 5xx is the node's own trouble, a full
# disk (507) included. Any other answer (403 a policy or a backup meant for another node,
# 413 over a size limit or quota, 400 a backup the node finds wrong) stays the same
# however often it is sent.
RETRYABLE = frozenset({401, 408, 409, 425, 429})


class NodeError(NetworkError):
    """A node answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def can_resume(exc: HnError) -> bool:
    """Whether pushing the backup again later can succeed where ``exc`` stopped it: the
    node could not be reached or the exchange broke off, or it answered an error of its
    own or one that passes (RETRYABLE)."""
    if not isinstance(exc, NetworkError):
        return False
    status = exc.status if isinstance(exc, NodeError) else None
    return status is None or status >= 500 or status in RETRYABLE


def _error(url: str, status: int, body: bytes) -> HnError:
    detail = error_detail(body)
    if status == 404:
        return NotFound(f"{url}: {detail}")
    return NodeError(f"{url}: HTTP {status} {detail}", status)


async def _signed(session: aiohttp.ClientSession, keys: IdentityKeys, method: str, url: str,
                  body: bytes) -> dict[str, Any]:
    headers = sign_request(keys, method, url, body)
    headers["Content-Type"] = "application/octet-stream" if method == "PUT" else "application/json"
    async with response(session, method, url, error=_error, data=body, headers=headers) as resp:
        raw = await resp.read()
    doc = loads_strict(raw, max_bytes=1 << 20)
    if not isinstance(doc, dict):
        raise NetworkError(f"{url}: unexpected answer")
    return doc


async def push(keys: IdentityKeys, base_url: str, header: dict[str, Any], payload: Path,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Upload (or finish uploading) one backup; returns the node's final status."""
    base_url = base_url.rstrip("/")
    raw = canonical(header)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        status = await _signed(session, keys, "POST", f"{base_url}/backup", raw)
        offset = int(status.get("received", 0))
        if progress and offset:
            progress(offset)
        with open(payload, "rb") as src:
            src.seek(offset)
            while not status.get("complete"):
                block = src.read(SEGMENT)
                url = f"{base_url}/backup/{header['id']}/blob?offset={offset}"
                status = await _signed(session, keys, "PUT", url, block)
                offset += len(block)
                if progress:
                    progress(len(block))
                if not block and not status.get("complete"):
                    raise NetworkError(f"{base_url}: the node did not accept the complete payload")
    return status


async def listing(base_url: str, owner: str) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/backup?owner={owner}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with response(session, "GET", url, error=_error) as resp:
            raw = await resp.read()
    doc = loads_strict(raw, max_bytes=16 << 20)
    items = doc.get("backups") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise NetworkError(f"{url}: unexpected answer")
    return [i for i in items if isinstance(i, dict)]


async def fetch_header(base_url: str, backup_id: str) -> dict[str, Any]:
    url = f"{base_url.rstrip('/')}/backup/{backup_id}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with response(session, "GET", url, error=_error) as resp:
            body = bytearray()
            async for block in resp.content.iter_chunked(1 << 16):
                body.extend(block)
                if len(body) > proto.MAX_HEADER:
                    raise VerificationError(f"{url}: header larger than {proto.MAX_HEADER} bytes")
    header = proto.parse_header(bytes(body))
    if header.get("id") != backup_id:
        raise VerificationError(f"{url}: the node answered with another backup")
    return header


async def fetch_payload(base_url: str, header: dict[str, Any], target: Path,
                        progress: Callable[[int], None] | None = None) -> None:
    """Download the payload to ``target``, refusing it unless size and digest match the header."""
    url = f"{base_url.rstrip('/')}/backup/{header['id']}/blob"
    limit = header["payload"]["size"]
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with response(session, "GET", url, error=_error) as resp:
            with atomic.atomic_writer(target, mode=0o600) as out:
                await copy_checked(
                    resp.content, out, limit, header["payload"]["digest"], block=1 << 20, progress=progress,
                    stored=f"the payload of backup {header['id']} in {target.parent}",
                    too_large=f"{url}: payload larger than its signed size of {limit} bytes",
                    mismatch=f"{url}: the payload digest does not match the signed header")


class RemoteSource:
    """Headers and payloads from a node; payloads are downloaded beside the restore target."""

    def __init__(self, base_url: str, scratch: Path, progress: Callable[[int], None] | None = None) -> None:
        self.base_url = base_url
        self.scratch = scratch
        self.progress = progress

    def header(self, backup_id: str) -> dict[str, Any]:
        return asyncio.run(fetch_header(self.base_url, backup_id))

    @contextlib.contextmanager
    def payload(self, header: dict[str, Any]) -> Iterator[Any]:
        path = self.scratch / f".{header['id']}.download"
        try:
            asyncio.run(fetch_payload(self.base_url, header, path, self.progress))
            with open(path, "rb") as handle:
                yield handle
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
