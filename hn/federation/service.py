"""Federation operations for the CLI: add, remove, list and refresh peers, with or without a node."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from hn.errors import HnError, InputError, MalformedDocument, TooLarge, VerificationError
from hn.federation import roster
from hn.federation.cache import peer_dir
from hn.federation.sync import PeerResult, Syncer, health_of
from hn.node.state import NodeState
from hn.proto import timefmt
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity

DEFAULT_INTERVAL = 300.0


def _session(total: float = 60) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total, sock_connect=5))


def interval(home: Home) -> float:
    value = home.read_toml("node.toml").get("sync_interval", DEFAULT_INTERVAL)
    return float(value) if isinstance(value, (int, float)) else DEFAULT_INTERVAL


async def pin_identity(home: Home, me: Identity, did: str, url: str, *, timeout: float = 60) -> dict[str, Any]:
    """Fetch, verify and pin the identity@1 that the node at ``url`` serves for ``did``.

    What the node sent is named in every refusal: a URL that is not an hn node (a web
    server answering with some other JSON, or with HTML) says so, not just that some
    document was not canonical JSON.
    """
    where = url.rstrip("/") + "/.well-known/hn/identity"
    state = NodeState(home)
    try:
        async with _session(timeout) as session:
            return await Syncer(home, state, me, session, interval(home)).pin_identity(did, url)
    except (MalformedDocument, TooLarge) as exc:
        raise MalformedDocument(f"{where} is not an hn identity document: {exc.message}") from exc
    except VerificationError as exc:
        if url.rstrip("/") in exc.message:
            raise
        raise type(exc)(f"{where}: {exc.message}") from exc
    finally:
        state.close()


async def add(home: Home, did: str, url: str) -> dict[str, Any]:
    me = identities.load(home)
    url = roster.checked(did, url)  # before anything is fetched from it
    if did == me.did:
        raise InputError("you cannot federate with yourself")
    before = next((p["url"] for p in roster.peers(home) if p["did"] == did), None)
    doc = await pin_identity(home, me, did, url)
    entry = roster.add(home, did, url)
    state = NodeState(home)
    try:
        state.upsert_peer(did, entry["url"])
    finally:
        state.close()
    with home.lock():
        home.append_event(me.keys, "federate.add", {"did": did, "url": entry["url"]})
    return {"did": did, "url": entry["url"], "alias": doc.get("alias"), "keys": len(doc["keys"]),
            "previous_url": before, "url_changed": before is not None and before != entry["url"]}


def remove(home: Home, did: str) -> dict[str, Any]:
    me = identities.load(home)
    roster.remove(home, did)
    state = NodeState(home)
    try:
        state.remove_peer(did)
    finally:
        state.close()
    with home.lock():
        home.append_event(me.keys, "federate.remove", {"did": did})
    return {"did": did, "removed": True}


def listing(home: Home) -> list[dict[str, Any]]:
    state = NodeState(home)
    try:
        now = timefmt.now()
        every = interval(home)
        out = []
        for peer in roster.peers(home):
            row = state.peer(peer["did"]) or {}
            if not row:
                state.upsert_peer(peer["did"], peer["url"])
                row = state.peer(peer["did"]) or {}
            out.append({
                "did": peer["did"],
                "url": peer["url"],
                "health": health_of(row, every, now),
                "last_sync": timefmt.fmt(row["last_success"]) if row.get("last_success") else None,
                "last_attempt": timefmt.fmt(row["last_attempt"]) if row.get("last_attempt") else None,
                "cursor": row.get("cursor"),
                "root": row.get("root") or None,
                "size": row.get("size"),
                "presence_seq": row.get("presence_seq"),
                "failures": row.get("failures"),
                "last_error": row.get("last_error") or None,
                "last_source": row.get("last_source") or None,
                "cache": str(peer_dir(home, peer["did"])),
            })
        return out
    finally:
        state.close()


async def refresh(home: Home, mirror: bool = False, only: str | None = None) -> list[dict[str, Any]]:
    me = identities.load(home)
    peers = roster.peers(home)
    if only is not None:
        peers = [roster.get(home, only)]
    state = NodeState(home)
    try:
        async with _session() as session:
            syncer = Syncer(home, state, me, session, interval(home))
            results = await asyncio.gather(*(syncer.refresh_peer(p["did"], p["url"], mirror=mirror) for p in peers),
                                           return_exceptions=True)
    finally:
        state.close()
    out = []
    for peer, result in zip(peers, results):
        if isinstance(result, HnError):
            # Not recorded in the peer's health (another sync of it under way, this machine's
            # disk): said here, and the other peers' results stand.
            out.append(PeerResult(peer["did"], False, error=result.message).as_dict())
        elif isinstance(result, BaseException):
            raise result
        else:
            out.append(result.as_dict())
    return out
