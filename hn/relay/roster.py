"""My relays: relay@1 entries kept in config/node.toml and carried in my presence@2."""

from __future__ import annotations

from typing import Any

from hn.errors import InputError, MalformedDocument, NotFound
from hn.federation.roster import check_node_url
from hn.proto import timefmt
from hn.proto.keys import is_did
from hn.proto.presence import RELAY_TYPE
from hn.vault import presence
from hn.vault.home import Home
from hn.vault.identities import Identity

DEFAULT_LIFETIME = 30 * 24 * 3600
MAX_LIFETIME = 3650 * 24 * 3600


def my_relays(home: Home) -> list[dict[str, Any]]:
    relays = home.read_toml("node.toml").get("relays", [])
    return [r for r in relays if isinstance(r, dict) and is_did(r.get("did"))]


def _save(home: Home, relays: list[dict[str, Any]]) -> None:
    config = home.read_toml("node.toml")
    config["relays"] = sorted(relays, key=lambda r: r["did"])
    home.write_toml("node.toml", config)


def check_lifetime(lifetime: int) -> int:
    """A relay entry's lifetime in seconds: positive (an entry that has already expired is
    useless to every relay) and at most MAX_LIFETIME."""
    if type(lifetime) is not int or not 0 < lifetime <= MAX_LIFETIME:
        raise InputError(f"a relay entry must last from 1 second to {MAX_LIFETIME // 86400} days, "
                         f"not {lifetime!r} seconds")
    return lifetime


def checked(me: Identity, relay_did: str, url: str, lifetime: int, url_name: str = "relay URL") -> str:
    """The relay URL as an entry keeps it, after checking the relay's DID, the URL (named
    ``url_name`` in errors) and the entry's lifetime."""
    if not is_did(relay_did):
        raise InputError(f"not a did:hn DID: {relay_did!r}")
    if relay_did == me.did:
        raise InputError("a node cannot be its own relay")
    url = check_node_url(url, url_name)
    check_lifetime(lifetime)
    return url


def register(home: Home, me: Identity, relay_did: str, url: str,
             lifetime: int = DEFAULT_LIFETIME) -> tuple[dict[str, Any], dict[str, Any]]:
    """Add (or renew) a relay; re-signs my presence with it. Returns (entry, presence)."""
    url = checked(me, relay_did, url, lifetime)
    entry = {"type": RELAY_TYPE, "did": relay_did, "url": url,
             "expires_at": timefmt.fmt(timefmt.now() + lifetime)}
    with home.lock():
        relays = [r for r in my_relays(home) if r["did"] != relay_did] + [entry]
        _save(home, relays)
        home.append_event(me.keys, "relay.register", {"did": relay_did, "url": entry["url"]})
    doc, _ = presence.refresh(home, me, relays=relays)
    return entry, doc


def unregister(home: Home, me: Identity, relay_did: str) -> dict[str, Any]:
    relays = my_relays(home)
    if not any(r["did"] == relay_did for r in relays):
        raise NotFound(f"{relay_did} is not one of your relays")
    with home.lock():
        relays = [r for r in relays if r["did"] != relay_did]
        _save(home, relays)
        home.append_event(me.keys, "relay.unregister", {"did": relay_did})
    doc, _ = presence.refresh(home, me, relays=relays)
    return doc


def expires(relay: dict[str, Any]) -> float:
    """When a relay entry of config/node.toml expires; an entry edited by hand into
    something else is named, with what to do about it."""
    did, value = relay["did"], relay.get("expires_at")
    try:
        return timefmt.parse(value)
    except MalformedDocument as exc:
        raise InputError(f"config/node.toml: the relay entry of {did} has expires_at {value!r}, not a time of the "
                         f"form YYYY-MM-DDTHH:MM:SSZ; register it again (hn mcp relay register {did} --url URL) "
                         f"or remove it (hn mcp relay unregister {did})") from exc


def live_relays(home: Home, now: float) -> list[dict[str, Any]]:
    return [r for r in my_relays(home) if expires(r) > now]
