"""DID -> verified presence@2: from a DHT hint, a DNS TXT record, or the signed local cache.

``resolve`` is the one entry point; each source is a small function returning a
``Resolution`` that names the source that answered, so further sources (relays, the
federation roster) slot in beside ``from_dht`` and ``from_dns``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from hn.dht import cache
from hn.dht.dns import TxtEntry, lookup_txt
from hn.errors import HnError, NetworkError, NotFound, VerificationError
from hn.netclient import fetch_bytes
from hn.proto import timefmt
from hn.proto.canonical import doc_digest, loads_canonical
from hn.proto.dht_hint import HINT_TYPE, Hint, parse_hint
from hn.proto.identity import KeyHistory, verify_identity
from hn.proto.presence import verify_presence
from hn.proto.signed import verify_document
from hn.vault.home import Home
from hn.vault.identities import known_history

FETCH_TIMEOUT = 5.0
MAX_PRESENCE = 64 * 1024
HintSource = Callable[[str], Awaitable[Any]]


@dataclass
class Resolution:
    did: str
    source: str
    hint: Hint | None = None
    presence: dict[str, Any] | None = None
    presence_url: str | None = None
    fallback: bool = False
    detail: str = ""
    lookup: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "did": self.did, "source": self.source, "fallback": self.fallback,
            "hint": self.hint.doc if self.hint else None,
            "hint_seq": self.hint.seq if self.hint else None,
            "presence": self.presence, "presence_url": self.presence_url,
            "verified": self.presence is not None or (self.hint is not None and self.source != "cache"),
            "detail": self.detail, "lookup": self.lookup,
        }


def history_for(home: Home, hint: Hint) -> KeyHistory:
    """The key history to trust for a hint's signer: the pinned one if it is longer.

    The hint's own chain proves its key belonged to the DID; a pinned, longer history
    also proves whether that key was rotated out before the hint was signed.
    """
    pinned = known_history(home, hint.did)
    if pinned is None or hint.history.extends(pinned):
        return hint.history
    if pinned.extends(hint.history):
        verify_document(hint.doc, pinned, HINT_TYPE)
        return pinned
    raise VerificationError(f"key history in the hint of {hint.did} forks from the pinned one")


async def fetch_doc(url: str, timeout: float = FETCH_TIMEOUT) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        status, body, _ = await fetch_bytes(session, url, max_bytes=MAX_PRESENCE)
    if status != 200:
        raise NetworkError(f"{url}: HTTP {status}")
    doc = loads_canonical(body, max_bytes=MAX_PRESENCE)
    if not isinstance(doc, dict):
        raise VerificationError(f"{url}: not a JSON object")
    return doc


def check_presence(doc: dict[str, Any], did: str, history: KeyHistory, digest: str | None) -> dict[str, Any]:
    verify_presence(doc, history, now=timefmt.now())
    if doc["did"] != did:
        raise VerificationError(f"presence is for {doc['did']}, expected {did}")
    if digest is not None and doc_digest(doc) != digest:
        raise VerificationError("presence digest does not match the hint (stale or substituted presence)")
    return doc


async def from_dht(home: Home, did: str, get_hint: HintSource, *, hint_only: bool) -> Resolution:
    got = await get_hint(did)
    hint: Hint | None = got.hint
    stats = {"holders": got.holders, "invalid": got.invalid, "queried": got.queried,
             "restored": got.restored, "seconds": round(got.seconds, 4)}
    if hint is None:
        raise NotFound(f"no valid dht_hint@1 for {did} in the DHT")
    note = ""
    held = cache.cached(home, did)
    if held is not None and hint.seq < held[0].seq:
        # Never back below a hint already verified: the DHT's is stale or replayed. The
        # cached one, while still valid, is the highest valid seq there is to follow.
        try:
            hint = parse_hint(held[0].raw, now=timefmt.now())
        except HnError:
            cache.check_not_older(home, did, hint.seq, None)  # raises the RollbackError
        note = (f"the DHT offered only seq {got.hint.seq}, older than seq {hint.seq} already verified; "
                "followed the cached hint")
    history = history_for(home, hint)
    out = Resolution(did, "dht", hint=hint, presence_url=hint.presence_url, lookup=stats, detail=note)
    if hint_only:
        out.detail = "; ".join(filter(None, ["hint verified; presence not fetched", note]))
        return out
    try:
        doc = await fetch_doc(hint.presence_url)
    except NetworkError as exc:
        # The node itself does not answer: ask the relays its presence names.
        relayed = await from_relays(home, did, history, hint, f"node: {exc.message}", known_relays(home, did, hint),
                                    "the node did not answer; presence served by its relay, verified")
        relayed.lookup = stats
        return relayed
    out.presence = check_presence(doc, did, history, hint.presence_digest)
    cache.store(home, hint, out.presence)
    return out


def known_relays(home: Home, did: str, hint: Hint | None) -> list[dict[str, Any]]:
    """Relays of ``did`` from the last presences we verified (discover cache, federation cache)."""
    from hn.federation.cache import cached_relays, relays_of

    relays: list[dict[str, Any]] = []
    try:
        relays += relays_of(cache.load(home, did)[1])
    except HnError:
        pass
    found: dict[str, dict[str, Any]] = {}
    for relay in relays + cached_relays(home, did):
        found.setdefault(relay["did"], relay)
    if hint is not None and hint.relay and hint.relay not in found:
        # The hint names a relay DID; a relay we federate with gives its URL.
        from hn.federation import roster

        for peer in roster.peers(home):
            if peer["did"] == hint.relay:
                found[hint.relay] = {"did": hint.relay, "url": peer["url"]}
    return list(found.values())


async def from_relays(home: Home, did: str, history: KeyHistory, hint: Hint | None, why: str,
                      relays: list[dict[str, Any]], detail: str) -> Resolution:
    """The presence from the first of ``relays`` (from ``known_relays``) that serves a valid one.

    ``why`` is what failed before (it leads the error if no relay answers either);
    ``detail`` says in the answer why a relay was asked.
    """
    errors = [why]
    for relay in relays:
        url = relay["url"].rstrip("/") + f"/relay/{did}/presence"
        try:
            presence = check_presence(await fetch_doc(url), did, history, None)
            cache.check_not_older(home, did, None, presence["seq"])
        except HnError as exc:
            errors.append(f"relay {relay['did']}: {exc.message}")
            continue
        out = Resolution(did, f"relay:{relay['did']}", hint=hint, presence=presence, presence_url=url, detail=detail)
        if hint is not None:
            cache.store(home, hint, presence)
        return out
    raise NetworkError("; ".join(errors))


async def from_dns(home: Home, did: str, name: str, server: tuple[str, int] | None) -> Resolution:
    entries: list[TxtEntry] = await lookup_txt(name, server)
    mine = [e for e in entries if e.did == did]
    if not mine:
        raise NotFound(f"no TXT record for {did} at {name}")
    base = mine[0].url.rstrip("/")
    identity = await fetch_doc(base + "/.well-known/hn/identity")
    offered = verify_identity(identity)
    if offered.did != did:
        raise VerificationError(f"{base} serves the identity of {offered.did}, expected {did}")
    pinned = known_history(home, did)
    history = pinned if pinned is not None and pinned.extends(offered) else offered
    url = base + "/.well-known/hn/presence"
    presence = check_presence(await fetch_doc(url), did, history, None)
    cache.check_not_older(home, did, None, presence["seq"])
    return Resolution(did, "dns", presence=presence, presence_url=url, detail=f"TXT {name}")


def from_cache(home: Home, did: str, reason: str) -> Resolution:
    hint, presence, expired = cache.load(home, did)
    note = "presence has expired" if expired else "presence still within its lifetime"
    return Resolution(did, "cache", hint=hint, presence=presence, presence_url=hint.presence_url,
                      fallback=True, detail=f"network failed ({reason}); last verified presence from the local cache, {note}")


async def resolve(
    home: Home, did: str, *, get_hint: HintSource | None, mode: str = "any", hint_only: bool = False,
    dns_name: str | None = None, dns_server: tuple[str, int] | None = None, cache_fallback: bool = False,
    no_dht: str | None = None,
) -> Resolution:
    """Resolve ``did``; ``mode`` is any | dht | dns. Returns the source that answered.

    ``no_dht`` says why there is no ``get_hint`` (no bootstrap peer answered, none is
    configured): it is the reason given when nothing else answers either.
    """
    errors: list[str] = [no_dht] if no_dht and mode != "dns" else []
    attempts: list[Callable[[], Awaitable[Resolution]]] = []
    if mode in ("any", "dht") and get_hint is not None:
        attempts.append(lambda: from_dht(home, did, get_hint, hint_only=hint_only))
    if mode in ("any", "dns") and dns_name:
        attempts.append(lambda: from_dns(home, did, dns_name, dns_server))
    relays: list[dict[str, Any]] | None = None  # read (and verified) when needed, then once
    if not attempts:
        relays = known_relays(home, did, None) if mode == "any" else []
        if not relays and not errors:
            raise HnError("nothing to resolve with: no DHT node and no DNS name (see --dns-name)")
        if not relays and not cache_fallback:  # the DHT was wanted but could not be reached
            raise NetworkError(f"could not resolve {did}: {'; '.join(errors)}"
                               + ("; no DNS name to try either (see --dns-name)" if mode == "any" else ""))
    for attempt in attempts:
        try:
            return await asyncio.wait_for(attempt(), timeout=15)
        except (TimeoutError, HnError) as exc:
            errors.append(exc.message if isinstance(exc, HnError) else "timed out")
    reason = "; ".join(errors)
    history = known_history(home, did)
    if mode == "any" and not hint_only and history is not None:
        relays = known_relays(home, did, None) if relays is None else relays
        if relays:
            # No hint to be had: the relays named in the last presence we verified still know.
            try:
                return await asyncio.wait_for(from_relays(
                    home, did, history, None, reason, relays,
                    f"no hint or DNS record answered ({reason}); presence served by a relay named in the last "
                    "verified presence, verified"), timeout=15)
            except (TimeoutError, HnError) as exc:
                errors.append(exc.message if isinstance(exc, HnError) else "relays timed out")
                reason = "; ".join(errors)
    if cache_fallback:
        try:
            return from_cache(home, did, reason)
        except HnError as exc:
            # The network failure that led here is said first, whatever is wrong with the cache.
            kind = NotFound if isinstance(exc, NotFound) else VerificationError
            raise kind(f"could not resolve {did}: {reason}; {exc.message}" if reason else exc.message) from exc
    failure = errors[-1] if errors else "no source"
    raise NotFound(f"could not resolve {did}: {reason or failure}")
