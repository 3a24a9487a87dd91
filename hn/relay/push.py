"""Pushing my presence@2, identity@1 and full index slices to my relays (RFC 9421-signed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from hn.errors import InputError, NotFound
from hn.federation import roster
from hn.federation.publisher import Publisher
from hn.federation.roster import check_node_url
from hn.netclient import NETWORK_ERRORS, describe
from hn.node.httpsig import sign_request
from hn.proto import timefmt
from hn.proto.canonical import canonical, loads_canonical
from hn.proto.index import MAX_SLICE_ENTRIES
from hn.relay.roster import live_relays, my_relays
from hn.vault import policy, presence
from hn.vault.home import Home
from hn.vault.identities import Identity

MAX_SLICES = 64


def bundle(home: Home, me: Identity) -> bytes:
    """The push body: current presence, identity and every slice of the index from cursor 0."""
    source = str(home.read_toml("node.toml").get("public_url") or "http://127.0.0.1:7733")
    publisher = Publisher(home, source)
    snap = publisher.snapshot()
    slices = []
    cursor = "0"
    for _ in range(MAX_SLICES):
        doc = loads_canonical(publisher.slice_bytes(cursor, MAX_SLICE_ENTRIES))
        slices.append(doc)
        if not doc["more"]:
            break
        cursor = doc["next_cursor"]
    body: dict[str, Any] = {"presence": snap.presence, "identity": me.doc, "slices": slices}
    if policy.get(home, "federation.mode") == "friends":
        # The relay serves the index only to these (the roster), as this node would.
        body["readers"] = [peer["did"] for peer in roster.peers(home)]
    return canonical(body)


async def push_one(home: Home, me: Identity, relay: dict[str, Any], session: aiohttp.ClientSession,
                   body: bytes | None = None) -> dict[str, Any]:
    try:  # config/node.toml may have been edited by hand
        given = relay.get("url")
        base = check_node_url(given if isinstance(given, str) else "", "relay URL")
    except InputError as exc:
        return {"relay": relay["did"], "url": relay.get("url"), "ok": False, "error": exc.message}
    url = base + f"/relay/{me.did}/presence"
    payload = body if body is not None else bundle(home, me)
    headers = sign_request(me.keys, "POST", url, payload)
    headers["Content-Type"] = "application/json"
    try:
        async with session.post(url, data=payload, headers=headers) as resp:
            text = await resp.read()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = {}
            if resp.status == 200:
                return {"relay": relay["did"], "url": relay["url"], "ok": True, **answer}
            return {"relay": relay["did"], "url": relay["url"], "ok": False, "status": resp.status,
                    "error": answer.get("detail") or f"HTTP {resp.status}"}
    except NETWORK_ERRORS as exc:
        return {"relay": relay["did"], "url": relay["url"], "ok": False, "error": describe(exc)}


async def push(home: Home, me: Identity, to: str | None = None) -> list[dict[str, Any]]:
    presence.refresh(home, me)
    now = timefmt.now()
    relays = live_relays(home, now)
    expired = [r for r in my_relays(home) if r not in relays and (to is None or r["did"] == to)]
    if to is not None:
        relays = [r for r in relays if r["did"] == to]
    if not relays and expired:
        # A relay refuses an entry that has expired: nothing to push until it is renewed.
        names = ", ".join(f"{r['did']} (expired {r['expires_at']})" for r in expired)
        raise NotFound(f"your relay entry has expired for {names}: renew it with "
                       "hn mcp relay register RELAY_DID --url URL [--days N]")
    if not relays and to is not None:
        raise NotFound(f"{to} is not one of your relays (hn mcp relay register)")
    if not relays:
        raise NotFound("you have no relays yet (hn mcp relay register RELAY_DID --url URL)")
    body = bundle(home, me)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        return list(await asyncio.gather(*(push_one(home, me, r, session, body) for r in relays)))
