"""Where this node keeps what it learnt of each friend (``cache/federation/<did tail>/``),
and the relays named by the presence cached there. Light on imports: the DHT resolver and
the relay routes read it without loading the syncer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hn.errors import HnError, InputError
from hn.federation.roster import check_node_url
from hn.proto.canonical import loads_canonical
from hn.vault.home import Home
from hn.vault.identities import did_tail


def peer_dir(home: Home, did: str) -> Path:
    return home.path("cache", "federation", did_tail(did))


def relays_of(presence: Any) -> list[dict[str, Any]]:
    """The relays a presence names, each with a string DID and a URL this node can use as a
    node's address (check_node_url); others are skipped, so a peer's signed but odd relay
    URL is never handed to the request signer or the HTTP client."""
    relays = presence.get("relays") if isinstance(presence, dict) else None
    return [r for r in relays if isinstance(r, dict) and isinstance(r.get("did"), str)
            and isinstance(r.get("url"), str) and _usable(r["url"])] if isinstance(relays, list) else []


def _usable(url: str) -> bool:
    try:
        check_node_url(url, "relay URL")
    except InputError:
        return False
    return True


def cached_relays(home: Home, did: str) -> list[dict[str, Any]]:
    """Relays named in the peer's presence this node last verified and cached (none if unreadable)."""
    cached = peer_dir(home, did) / "presence.json"
    try:
        return relays_of(loads_canonical(cached.read_bytes())) if cached.exists() else []
    except (HnError, OSError):
        return []
