"""Fetching what friends expose: their link headers and their published reputations.

Requests are signed (RFC 9421) so the friend's node knows who asks. Every document
that comes back is verified against the friend's pinned key history before it is
kept; a friend's reputation@1 also goes through the seq high-water mark (rollback and
fork refused).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from hn.errors import HnError, MalformedDocument, NetworkError, VerificationError
from hn.federation import roster
from hn.netclient import fetch_bytes
from hn.node.httpsig import sign_request
from hn.node.state import NodeState
from hn.proto import timefmt
from hn.proto import trust as proto
from hn.proto.canonical import doc_digest, loads_canonical, loads_strict
from hn.trust import links
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity

TIMEOUT = 15.0


def _detail(body: bytes) -> str:
    """The reason a friend's node gives for an error, cut short and with the characters a
    terminal acts on shown as escapes: it ends up in our messages (only the CLI fetches)."""
    from hn.cli.output import safe

    try:
        doc = loads_strict(body)
        return safe(str(doc.get("detail", ""))[:200]) if isinstance(doc, dict) else ""
    except HnError:
        return ""


async def _signed_get(session: aiohttp.ClientSession, me: Identity, url: str) -> bytes:
    status, body, _ = await fetch_bytes(session, url, headers=sign_request(me.keys, "GET", url, b""))
    if status != 200:
        raise NetworkError(f"{url}: HTTP {status} {_detail(body)}".rstrip())
    return body


async def fetch_links_of(home: Home, me: Identity, session: aiohttp.ClientSession,
                         did: str, url: str) -> dict[str, Any]:
    """Fetch and verify one friend's live link headers; the cache is replaced only if all verify."""
    target = f"{url.rstrip('/')}/trust/{did}/links"
    try:
        raw = loads_canonical(await _signed_get(session, me, target))
        if not isinstance(raw, dict) or raw.get("owner") != did or not isinstance(raw.get("links"), list):
            raise MalformedDocument(f"{target}: not a trust_links@1 answer for {did}")
        history = identities.require_history(home, did)
        limit, now = links.max_age(home), timefmt.now()
        headers = []
        for header in raw["links"]:
            doc = proto.verify_link(header, history, now=now, max_age=limit)
            if doc["from"] != did:
                raise VerificationError(f"{did} served a link signed by {doc['from']}")
            headers.append(doc)
    except HnError as exc:
        return {"did": did, "ok": False, "error": exc.message, "links": 0}
    links.save_friend_links(home, did, headers)
    return {"did": did, "ok": True, "error": None, "links": len(headers)}


async def fetch_all(home: Home, me: Identity) -> list[dict[str, Any]]:
    peers = roster.peers(home)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=5)) as session:
        return list(await asyncio.gather(*(fetch_links_of(home, me, session, p["did"], p["url"]) for p in peers)))


async def fetch_reputation(home: Home, me: Identity, url: str, observer: str, target: str) -> dict[str, Any]:
    """A friend's published reputation@1 about ``target``, verified and checked for rollback."""
    full = f"{url.rstrip('/')}/trust/{target}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=5)) as session:
        raw = await _signed_get(session, me, full)
    doc = proto.verify_reputation(loads_canonical(raw), identities.require_history(home, observer))
    if doc["target"] != target:
        raise VerificationError(f"{full} answered a reputation about {doc['target']}")
    state = NodeState(home)
    try:
        # One mark per observer and target: the observer numbers its documents across all
        # targets, so its current one about this target may well be older than another
        # target's already fetched (spec/reputation@1.md).
        state.check_and_record_seq(observer, f"{proto.REPUTATION_TYPE}-{identities.did_tail(target)}",
                                   doc["seq"], doc_digest(doc))
    finally:
        state.close()
    return doc
