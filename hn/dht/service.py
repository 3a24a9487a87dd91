"""Discovery verbs shared by the node and the CLI: sign our hint, publish it, resolve a DID.

A vault signs its own dht_hint@1 for its current presence@2. The seq is at least the Unix
time of signing and above the last one signed, so it keeps increasing even if the local
record of the last hint is lost (a lower seq would be refused by every holder).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hn.dht import config as dht_config
from hn.dht.dns import txt_record
from hn.dht.node import DhtNode, PublishResult
from hn.dht.resolve import Resolution, resolve
from hn.errors import HnError, InputError, MalformedDocument, NetworkError
from hn.proto import timefmt
from hn.proto.canonical import doc_digest, loads_canonical
from hn.proto.dht_hint import MAX_TTL, Hint, build_hint, parse_hint
from hn.vault import atomic, presence
from hn.vault.home import Home
from hn.vault.identities import Identity

PRESENCE_PATH = "/.well-known/hn/presence"
CLIENT_JOIN_DEADLINE = 3.0


def own_hint_path(home: Home) -> Path:
    return home.path("cache", "dht", "own_hint.json")  # type: ignore[no-any-return]


def last_own_seq(home: Home) -> int:
    path = own_hint_path(home)
    if not path.exists():
        return 0
    try:
        return parse_hint(path.read_bytes()).seq
    except HnError:
        return 0


def sign_own_hint(home: Home, me: Identity, *, ttl: int = MAX_TTL) -> bytes:
    if presence.current(home, me.did) is None:
        raise InputError("this vault has no presence@2 yet: start `hn mcp serve` once first")
    # Re-sign the presence if what it says is out of date, so the hint names what the
    # node serves from now on.
    doc, _ = presence.refresh(home, me)
    url = doc.get("url")
    if not isinstance(url, str) or not url:
        raise InputError("this vault's presence@2 names no URL: run `hn mcp serve --public-url URL`")
    relay = doc["relays"][0]["did"] if doc.get("relays") else None
    now = timefmt.now()
    seq = max(last_own_seq(home) + 1, int(now))
    raw = build_hint(me.keys, me.history, seq=seq, presence_digest=doc_digest(doc),
                     presence_url=url.rstrip("/") + PRESENCE_PATH, issued_at=now, ttl=ttl, relay=relay)
    atomic.write_bytes(own_hint_path(home), raw)
    return raw


def current_own_hint(home: Home, did: str) -> Hint | None:
    """The last hint we signed, if it is still valid and still names the current presence."""
    path = own_hint_path(home)
    doc = presence.current(home, did)
    if not path.exists() or doc is None:
        return None
    try:
        hint = parse_hint(path.read_bytes(), now=timefmt.now())
    except HnError:
        return None
    return hint if hint.did == did and hint.presence_digest == doc_digest(doc) else None


def republish_due(home: Home, did: str, fraction: float) -> bool:
    """Is our hint missing, stale (the presence changed), or past ``fraction`` of its lifetime?"""
    hint = current_own_hint(home, did)
    if hint is None:
        return True
    return timefmt.now() >= hint.issued + fraction * (hint.expires - hint.issued)


async def republish_if_due(home: Home, node: DhtNode, me: Identity, fraction: float,
                           *, ttl: int = MAX_TTL) -> PublishResult | None:
    """Sign and publish a fresh hint when ``republish_due``; holders never republish ours."""
    if not republish_due(home, me.did, fraction):
        return None
    return await node.publish(sign_own_hint(home, me, ttl=ttl))


async def publish_own_again(home: Home, node: DhtNode, me: Identity, fraction: float) -> list[PublishResult]:
    """On start: our hint back into the DHT at once, not at 75% of its lifetime.

    The holders may have restarted or gone since it was stored. A fresh hint is signed
    when one is due anyway; otherwise the newest of the node's saved own hint and
    ``own_hint.json`` (written by a client-mode publish too) is stored again as it is.
    """
    if own_hint_path(home).exists():
        again = await republish_if_due(home, node, me, fraction)
        if again is not None:
            return [again]
    hint = current_own_hint(home, me.did)
    if hint is not None:
        saved = node.own.get(hint.key)
        if saved is None or last_seq(saved) < hint.seq:
            node.own[hint.key] = hint.raw
    return await node.publish_own()


def last_seq(raw: bytes) -> int:
    try:
        return parse_hint(raw).seq
    except HnError:
        return 0


def dns_record(home: Home, me: Identity, name: str | None) -> dict[str, str]:
    name = name or dht_config.txt_name(home)
    if not name:
        raise InputError("--dns-txt needs a name: pass --dns-name NAME or set [dns] txt_name in config/dht.toml")
    doc = presence.current(home, me.did) or {}
    url = doc.get("url")
    if not isinstance(url, str) or not url:
        raise InputError("this vault's presence@2 names no URL: run `hn mcp serve --public-url URL`")
    return txt_record(name, me.did, url)


async def client_node(home: Home, bootstrap: list[str] | None) -> DhtNode:
    """A short-lived DHT node in client mode: it answers nothing, so no peer keeps it."""
    peers = dht_config.bootstrap_list(home, bootstrap)
    if not peers:
        raise InputError("no DHT bootstrap peers: pass --bootstrap HOST:PORT or set bootstrap in config/dht.toml")
    addrs = [dht_config.resolve_addr(p) for p in peers]
    node = DhtNode(dht_config.DhtConfig(lookup_deadline=CLIENT_JOIN_DEADLINE), client=True)
    await node.listen(0, "0.0.0.0" if any(not a[0].startswith("127.") for a in addrs) else "127.0.0.1")
    try:
        known = await node.bootstrap(addrs)
    except BaseException:
        node.stop()
        raise
    if not known:
        node.stop()
        raise NetworkError(f"no DHT bootstrap peer answered ({', '.join(peers)})")
    return node


async def publish_with(node: DhtNode, raw: bytes) -> dict[str, Any]:
    result = await node.publish(raw)
    return result.as_dict()


async def run_client_publish(home: Home, me: Identity, bootstrap: list[str] | None) -> dict[str, Any]:
    raw = sign_own_hint(home, me)
    node = await client_node(home, bootstrap)
    try:
        started = time.monotonic()
        out = await publish_with(node, raw)
        out["seconds"] = round(time.monotonic() - started, 4)
    finally:
        node.stop()
    return {"hint": loads_canonical(raw), "dht": out, "via": "client"}


async def run_client_resolve(home: Home, did: str, bootstrap: list[str] | None, **options: Any) -> Resolution:
    node: DhtNode | None = None
    no_dht: str | None = None  # why there is no DHT to ask, said if nothing else answers
    if options.get("mode", "any") != "dns":
        try:
            node = await client_node(home, bootstrap)
        except (InputError, NetworkError) as exc:
            if options.get("mode") == "dht" and not options.get("cache_fallback"):
                raise
            node, no_dht = None, exc.message
    try:
        result = await resolve(home, did, get_hint=node.get_hints if node is not None else None,
                               no_dht=no_dht, **options)
        if node is not None:
            await node.settle(1.0)
        return result
    finally:
        if node is not None:
            node.stop()


def check_did_arg(did: str) -> str:
    from hn.proto.keys import is_did

    if not is_did(did):
        raise InputError(f"not a did:hn DID: {did!r}")
    return did


def parse_options(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MalformedDocument("expected a JSON object")
    return raw

