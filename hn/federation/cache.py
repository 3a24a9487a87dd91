"""Where this node keeps what it learnt of each friend (``cache/federation/<did tail>/``),
and the relays named by the presence cached there. Light on imports: the DHT resolver and
the relay routes read it without loading the syncer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hn.errors import HnError
from hn.proto.canonical import loads_canonical
from hn.vault.home import Home
from hn.vault.identities import did_tail


def peer_dir(home: Home, did: str) -> Path:
    return home.path("cache", "federation", did_tail(did))


def relays_of(presence: Any) -> list[dict[str, Any]]:
    """The relays a presence names, each with a string DID and URL (others are skipped)."""
    relays = presence.get("relays") if isinstance(presence, dict) else None
    return [r for r in relays if isinstance(r, dict) and isinstance(r.get("did"), str)
            and isinstance(r.get("url"), str)] if isinstance(relays, list) else []


def cached_relays(home: Home, did: str) -> list[dict[str, Any]]:
    """Relays named in the peer's presence this node last verified and cached (none if unreadable)."""
    cached = peer_dir(home, did) / "presence.json"
    try:
        return relays_of(loads_canonical(cached.read_bytes())) if cached.exists() else []
    except (HnError, OSError):
        return []
