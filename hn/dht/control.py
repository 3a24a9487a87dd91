"""The local control API: `hn discover` asks the running node over loopback with a bearer token.

The node writes a fresh random token to $HN_HOME/run/control.token (mode 0600) when it
starts; only a process that can read the vault can read it. Requests must come from a
loopback address and carry `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any

import aiohttp

from hn.errors import HnError, NetworkError
from hn.netclient import NETWORK_ERRORS, describe
from hn.proto.canonical import loads_strict
from hn.vault import atomic, serving
from hn.vault.home import Home

TOKEN_FILE = ("run", "control.token")
TIMEOUT = 30.0


def token_path(home: Home) -> Path:
    return home.path(*TOKEN_FILE)  # type: ignore[no-any-return]


def issue_token(home: Home) -> str:
    token = secrets.token_urlsafe(32)
    atomic.write_bytes(token_path(home), token.encode("ascii"), mode=0o600)
    return token


def authorised(remote: str | None, header: str | None, token: str) -> bool:
    try:
        loopback = remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), token.encode())


def running_node(home: Home) -> tuple[str, str] | None:
    """(base_url, token) of the node running on this vault, or None."""
    info = serving.node_info(home.root)
    if info is None:
        return None
    try:
        token = token_path(home).read_text("ascii").strip()
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    if not info.get("dht"):
        return None
    listen = info.get("listen")
    if not isinstance(listen, str) or not token:
        return None
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    scheme = "https" if info.get("tls") else "http"
    return f"{scheme}://{host}:{port}", token


def runs_without_dht(home: Home) -> bool:
    """Is a node serving this vault, started without a DHT (``--no-dht``)?"""
    info = serving.node_info(home.root)
    return info is not None and "dht" in info and not info["dht"] and serving.served(home.root) is not None


async def call(home: Home, path: str, body: dict[str, Any] | None, *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """POST ``body`` to the running node's control route ``path`` (GET when ``body`` is None)."""
    node = running_node(home)
    if node is None:
        raise NetworkError("no local node is running")
    base, token = node
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            method = "GET" if body is None else "POST"
            async with session.request(method, base + path, json=body, headers=headers, ssl=False) as resp:
                raw = await resp.read()
    except NETWORK_ERRORS as exc:
        raise NetworkError(f"local node at {base}: {describe(exc)}") from exc
    data = loads_strict(raw, max_bytes=1 << 20)
    if resp.status >= 400:
        error = HnError(str(data.get("detail") if isinstance(data, dict) else raw[:200]))
        error.code = str(data.get("error", "error")) if isinstance(data, dict) else "error"
        raise error
    if not isinstance(data, dict):
        raise NetworkError("local node answered with something other than a JSON object")
    return data
