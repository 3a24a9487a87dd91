"""The roster of friends' nodes: config/federation.toml (the operator may edit it)."""

from __future__ import annotations

from typing import Any

from hn.errors import InputError, NotFound
from hn.proto import timefmt
from hn.proto.keys import is_did
from hn.proto.presence import check_url
from hn.vault.home import Home

FILE = "federation.toml"


def peers(home: Home) -> list[dict[str, Any]]:
    data = home.read_toml(FILE)
    out = []
    for peer in data.get("peers", []):
        if isinstance(peer, dict) and is_did(peer.get("did")) and isinstance(peer.get("url"), str):
            out.append(peer)
    return sorted(out, key=lambda p: p["did"])


def is_friend(home: Home, did: str) -> bool:
    return any(p["did"] == did for p in peers(home))


def get(home: Home, did: str) -> dict[str, Any]:
    for peer in peers(home):
        if peer["did"] == did:
            return peer
    raise NotFound(f"{did} is not in your federation roster (`hn mcp federate list`)")


def checked(did: str, url: str) -> str:
    """The peer URL as the roster keeps it, after checking it and the DID."""
    if not is_did(did):
        raise InputError(f"not a did:hn DID: {did!r}")
    return check_url(url.rstrip("/"), "peer URL")


def add(home: Home, did: str, url: str) -> dict[str, Any]:
    url = checked(did, url)
    entry = {"did": did, "url": url, "added_at": timefmt.now_iso()}
    with home.lock():
        rest = [p for p in peers(home) if p["did"] != did]
        home.write_toml(FILE, {"peers": sorted(rest + [entry], key=lambda p: p["did"])})
    return entry


def remove(home: Home, did: str) -> None:
    get(home, did)
    with home.lock():
        home.write_toml(FILE, {"peers": [p for p in peers(home) if p["did"] != did]})
