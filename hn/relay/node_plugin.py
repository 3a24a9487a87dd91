"""The relay inside the node: accept signed pushes of friends' presence and slices, serve them
until they expire, and push our own presence to our relays on change and before expiry."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
from aiohttp import web

from hn.errors import Forbidden, HnError, MalformedDocument, NotFound, Unauthorized, VerificationError
from hn.federation.cache import peer_dir
from hn.node.context import CTX_KEY, NodeContext
from hn.node.http import canonical_response, did_param, file_response, read_body
from hn.node.httpsig import claimed_signer, verify_request
from hn.node.state import SeqFork
from hn.proto import timefmt
from hn.proto.canonical import canonical, doc_digest, loads_strict
from hn.proto.identity import KeyHistory, accept_update, verify_identity
from hn.proto.index import parse_cursor, verify_slice
from hn.proto.keys import is_did
from hn.proto.presence import verify_presence
from hn.relay import push as pusher
from hn.relay.store import Relayed, RelayStore
from hn.vault import identities, policy, presence
from hn.vault.store import index_root

log = logging.getLogger("hn.relay")
MAX_PUSH = 4 * 1024 * 1024
PRUNE_EVERY = 1.0
PUSH_POLL = 0.5
RETRY_FIRST = 5.0
RETRY_CAP = 300.0
MAX_READERS = 10_000
ARTIFACT_PATH = re.compile(r"^(doc|shard)/([0-9a-f]{64})$")


def relay_ttl(ctx: NodeContext) -> float:
    value = ctx.settings.get("relay_ttl")
    if value is None:
        value = policy.get(ctx.home, "relay.ttl")
        try:  # config/policy.toml edited by hand while the node runs (it does not start with it)
            policy.check_value("relay.ttl", value)
        except HnError as exc:
            value = policy.KNOWN["relay.ttl"][0]
            log.warning("relay.ttl.unusable", extra={"hn": {"error": exc.message, "used": value}})
    return float(value)


def check_accept(ctx: NodeContext, did: str) -> None:
    """policy relay.accept: friends (roster or contacts), allowlist, or a reputation selector."""
    from hn.trust import selectors

    selectors.require(ctx.home, "relay.accept", did, "relay push")


def _admit_unknown(ctx: NodeContext, did: str) -> None:
    """A signer this node holds no identity for is let through to the signature check only
    if policy relay.accept admits its DID; else 401, with why and what to do."""
    from hn.trust import selectors

    allowed, reason = selectors.allows(ctx.home, "relay.accept", did)
    if not allowed:
        raise Unauthorized(
            f"unknown signer {did}: this node has not pinned its identity and {reason}; to relay for it, "
            f"import its identity here (hn id import FILE) or admit it (hn policy set relay.accept allow "
            f"--target {did})")


def _parse_push(body: bytes) -> tuple[dict[str, Any], dict[str, Any], list[Any], list[str] | None]:
    """(presence, identity, slices, readers): ``readers`` is None for a public index, else the
    DIDs the publisher lets read it (federation.mode friends)."""
    doc = loads_strict(body, max_bytes=MAX_PUSH)
    if not isinstance(doc, dict) or not isinstance(doc.get("presence"), dict):
        raise MalformedDocument("push body must be an object with presence, identity and slices")
    ident, slices, readers = doc.get("identity"), doc.get("slices", []), doc.get("readers")
    if not isinstance(ident, dict) or not isinstance(slices, list):
        raise MalformedDocument("push body must carry identity@1 and a list of slices")
    if readers is not None and not (isinstance(readers, list) and len(readers) <= MAX_READERS
                                    and all(is_did(r) for r in readers)):
        raise MalformedDocument(f"push readers must be a list of at most {MAX_READERS} did:hn DIDs")
    return doc["presence"], ident, slices, readers


def _pinned(store: RelayStore, did: str) -> KeyHistory | None:
    """The key history pinned with ``did``'s relayed record (for a signer that is not a contact)."""
    held = store.held_identity(did)
    if held is None:
        return None
    try:
        history = verify_identity(held)
    except HnError:
        return None
    return history if history.did == did else None


def check_slices(slices: list[Any], history: KeyHistory, pres: dict[str, Any]) -> None:
    """The slices must be the whole index of this presence, as the relay serves them: from
    cursor "0", each one at the previous one's next_cursor, the last with more false, and
    their live entries must give the presence's index root and size."""
    if not slices:
        raise VerificationError(
            f"the push carries no index slices, but a relay serves the whole index: send every slice from "
            f"cursor 0 (the presence's index has {pres['index']['size']} entries)")
    held: dict[str, Any] = {}
    expected = "0"
    for number, item in enumerate(slices):
        verify_slice(item, history, pres)
        if item["cursor"] != expected:
            raise VerificationError(f"slice {number} is at cursor {item['cursor']}, expected {expected}: the "
                                    "slices must follow each other from cursor 0")
        if item["more"] != (number < len(slices) - 1):
            raise VerificationError("the last slice (and only the last) must have more false: the slices must "
                                    "be the whole index")
        expected = item["next_cursor"]
        for entry in item["entries"]:
            held[entry["id"]] = None if entry["type"] == "tombstone" else entry
    live = sorted((e for e in held.values() if e is not None), key=lambda e: e["id"].encode())
    if index_root(live) != pres["index"]["root"] or len(live) != pres["index"]["size"]:
        raise VerificationError(f"pushed slices do not add up to the presence's index root and size ({len(live)} "
                                f"live entries, the presence says {pres['index']['size']})")


async def push_route(request: web.Request) -> web.Response:
    ctx: NodeContext = request.app[CTX_KEY]
    did = did_param(request)
    body = await read_body(request, MAX_PUSH)
    store: RelayStore = ctx.extras["relay_store"]
    claimed = claimed_signer(request)
    if claimed != did:
        raise Forbidden(f"a push for {did} must be signed by {did}, not {claimed}")
    known = identities.known_history(ctx.home, claimed)
    # Policy first (on the DID the request names; nothing is kept unless the signature
    # verifies), then the signature, against the identity@1 the push carries once it
    # extends what this node pinned: a key rotated while the pusher's node was off
    # is learnt here, from its self-certifying history.
    if known is not None:
        check_accept(ctx, claimed)
    else:
        _admit_unknown(ctx, claimed)
    raw_presence, ident, slices, readers = _parse_push(body)
    offered = verify_identity(ident)
    if offered.did != claimed:
        raise VerificationError("the pushed identity@1 is not the signer's")
    history = accept_update(known if known is not None else _pinned(store, claimed), offered)
    signer = await verify_request(ctx, request, body, history)
    now = timefmt.now()
    pres = verify_presence(raw_presence, history, now=now)
    if pres["did"] != signer:
        raise VerificationError(f"presence is for {pres['did']}, not the signer {signer}")
    ttl_expiry = now + relay_ttl(ctx)
    entry_expiry = None
    for relay in pres.get("relays", []):
        if relay["did"] == ctx.identity.did:
            entry_expiry = timefmt.parse(relay["expires_at"])
    if entry_expiry is None:
        raise Forbidden("the presence does not name this node as a relay (hn mcp relay register)")
    if entry_expiry <= now:
        # Stored, it would expire at once: the pusher would push again and again.
        raise Forbidden(f"the presence's relay entry for this node expired at {timefmt.fmt(entry_expiry)}; "
                        f"renew it (hn mcp relay register {ctx.identity.did} --url URL) and push again")
    # Slices must be the whole index for this presence: the relay serves them as is.
    check_slices(slices, history, pres)
    try:
        ctx.state.check_and_record_seq(signer, "presence@2", pres["seq"], doc_digest(pres), canonical(pres))
    except SeqFork as fork:
        log.warning("relay.fork", extra={"hn": {
            "did": signer, "seq": pres["seq"], "accepted": fork.accepted, "refused": fork.refused,
            "evidence": [str(p) for p in fork.evidence], "evidence_problem": fork.evidence_problem}})
        raise
    expires = min(timefmt.parse(pres["expires_at"]), entry_expiry, ttl_expiry)
    if known is not None and len(offered.keys) > len(known.keys):
        identities.import_contact(ctx.home, canonical(ident), record_event=False)
    record = store.put(signer, pres, ident, slices, expires, now, readers)
    log.info("relay.accept", extra={"hn": {"did": signer, "seq": pres["seq"], "expires_at": expires}})
    return web.json_response({"accepted": True, "did": signer, "seq": pres["seq"],
                              "expires_at": timefmt.fmt(record.expires_at), "slices": len(slices)})


async def check_reader(ctx: NodeContext, request: web.Request, record: Relayed) -> None:
    """A relayed index (and the artefacts behind it) is read only by those its publisher
    lets read it: anyone for a public index, else a signed request from one of the DIDs
    the publisher pushed as its readers (whose identity this node must hold to check it)."""
    if record.readers is None:
        return
    if "Signature" not in request.headers:
        raise Unauthorized(f"{record.did} shares its index with friends only: sign the request (RFC 9421)")
    try:
        reader = await verify_request(ctx, request, b"")
    except Unauthorized as exc:
        raise Unauthorized(f"{exc.message} ({record.did} shares its index with friends only, and this relay "
                           "checks who asks)") from exc
    if reader not in record.readers:
        raise Forbidden(f"{record.did} shares its index with friends only, and {reader} is not one")


def live_record(request: web.Request, what: str) -> Relayed:
    """The live relayed record of the route's DID; 404 (naming ``what``) when there is none."""
    ctx: NodeContext = request.app[CTX_KEY]
    did = did_param(request)
    record = ctx.extras["relay_store"].get(did, timefmt.now())
    if record is None:
        raise NotFound(f"no live relayed {what} for {did}")
    return record  # type: ignore[no-any-return]


async def presence_route(request: web.Request) -> web.Response:
    return canonical_response(canonical(live_record(request, "presence").presence))


async def identity_route(request: web.Request) -> web.Response:
    """The identity@1 pushed with the relayed presence: readers learn a key rotated while
    the peer's node is off from here (it is self-certifying; they check it extends theirs)."""
    return canonical_response(canonical(live_record(request, "presence").identity))


async def index_route(request: web.Request) -> web.Response:
    ctx: NodeContext = request.app[CTX_KEY]
    store: RelayStore = ctx.extras["relay_store"]
    record = live_record(request, "index")
    did = record.did
    await check_reader(ctx, request, record)
    cursor = request.query.get("cursor", "0")
    parse_cursor(cursor)
    for item in store.slices(record):
        if item.get("cursor") == cursor:
            return canonical_response(canonical(item))
    raise NotFound(f"this relay holds no slice of {did} at cursor {cursor}")


async def artifact_route(request: web.Request) -> web.StreamResponse:
    """Mirrored artefacts of a relayed peer, from this node's federation cache (digest-checked there)."""
    ctx: NodeContext = request.app[CTX_KEY]
    record = live_record(request, "presence")
    did = record.did
    await check_reader(ctx, request, record)
    match = ARTIFACT_PATH.match(request.match_info["path"])
    if match is None:
        raise NotFound("no such artefact")
    path = peer_dir(ctx.home, did).joinpath("artifacts", *match.groups())
    if not path.is_file():
        raise NotFound("this relay has not mirrored that artefact")
    return await file_response(request, path, {"Content-Type": "application/octet-stream"})


class Pruner:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        store: RelayStore = self.ctx.extras["relay_store"]
        while True:
            store.prune(timefmt.now())  # logs relay.expire for each record it removes
            await asyncio.sleep(PRUNE_EVERY)


class AutoPush:
    """Re-push our presence to our relays when it changes and before it expires at a relay.

    A relay whose entry in our presence has expired is not pushed to (it would refuse);
    a push that fails is tried again after a pause that doubles, up to RETRY_CAP, until
    it succeeds or the presence changes.
    """

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        # relay DID -> (presence seq it holds, when to push it again)
        self.pushed: dict[str, tuple[int, float]] = {}
        # relay DID -> (presence seq that failed, failures in a row, when to try again)
        self.failed: dict[str, tuple[int, int, float]] = {}
        self.expired: set[str] = set()

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            while True:
                await asyncio.sleep(PUSH_POLL)
                try:
                    await self.tick(session)
                except Exception:
                    log.exception("relay.autopush.failed")

    def due(self, relay: dict[str, Any], seq: int, now: float) -> bool:
        did = relay["did"]
        if timefmt.parse(relay["expires_at"]) <= now:
            if did not in self.expired:
                self.expired.add(did)
                log.info("relay.autopush.expired", extra={"hn": {"relay": did, "expires_at": relay["expires_at"]}})
            return False
        self.expired.discard(did)
        failed_seq, _, retry_at = self.failed.get(did, (0, 0, 0.0))
        if failed_seq == seq and now < retry_at:
            return False
        held_seq, again_at = self.pushed.get(did, (0, 0.0))
        return held_seq != seq or now >= again_at

    async def tick(self, session: aiohttp.ClientSession) -> None:
        doc = presence.current(self.ctx.home, self.ctx.identity.did)
        if doc is None or not doc.get("relays"):
            return
        now = timefmt.now()
        for relay in doc["relays"]:
            if not self.due(relay, doc["seq"], now):
                continue
            result = await pusher.push_one(self.ctx.home, self.ctx.identity, relay, session)
            if result.get("ok"):
                self.failed.pop(relay["did"], None)
                self.pushed[relay["did"]] = (doc["seq"], self._again_at(result, now))
            else:
                _, count, _ = self.failed.get(relay["did"], (0, 0, 0.0))
                pause = min(RETRY_FIRST * 2 ** min(count, 16), RETRY_CAP)
                self.failed[relay["did"]] = (doc["seq"], count + 1, now + pause)
                log.warning("relay.autopush.refused", extra={"hn": {
                    "relay": relay["did"], "status": result.get("status"), "error": result.get("error"),
                    "retry_in": pause}})

    def _again_at(self, result: dict[str, Any], now: float) -> float:
        """Push again at 3/4 of the time the relay keeps the presence (as it answered), else
        at 3/4 of this node's own relay TTL."""
        lifetime = relay_ttl(self.ctx)
        answered = result.get("expires_at")
        if isinstance(answered, str):
            try:
                kept = timefmt.parse(answered) - now
            except HnError:
                kept = 0.0
            if kept > 0:  # else the relay's clock is off: this node's TTL it is
                lifetime = kept
        return now + max(0.75 * lifetime, PUSH_POLL)


async def setup(ctx: NodeContext) -> None:
    ctx.extras["relay_store"] = RelayStore(ctx.home)
    ctx.app.router.add_post("/relay/{did}/presence", push_route)
    ctx.app.router.add_get("/relay/{did}/presence", presence_route)
    ctx.app.router.add_get("/relay/{did}/identity", identity_route)
    ctx.app.router.add_get("/relay/{did}/index", index_route)
    ctx.app.router.add_get("/relay/{did}/artifact/{path:.+}", artifact_route)
    ctx.background.append(Pruner(ctx).run)
    ctx.background.append(AutoPush(ctx).run)
