"""Federation inside the node: /federate/index, /artifact, /federate/notify, the sync worker."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
from aiohttp import web

from hn.errors import Forbidden, HnError, InputError, MalformedDocument, NotFound, Unauthorized
from hn.federation import roster
from hn.federation.publisher import Publisher
from hn.federation.sync import Syncer
from hn.netclient import NETWORK_ERRORS, describe
from hn.node.context import CTX_KEY, NodeContext
from hn.node.http import canonical_response, file_response, not_modified, read_body
from hn.node.httpsig import sign_request, verify_request
from hn.proto import timefmt
from hn.proto.canonical import canonical, loads_strict
from hn.proto.index import MAX_SLICE_ENTRIES, parse_cursor
from hn.proto.keys import is_did
from hn.vault import policy, presence
from hn.vault.store import object_path, shard_path

log = logging.getLogger("hn.federation")
ARTIFACT_PATH = re.compile(r"^(doc|shard)/([0-9a-f]{64})$")
WORKER_TICK = 1.0
PRESENCE_POLL = 0.05


async def requester(ctx: NodeContext, request: web.Request) -> str | None:
    """The signer of a request, or None for an unsigned one."""
    if "Signature" not in request.headers:
        return None
    return await verify_request(ctx, request, b"")


async def check_reader(ctx: NodeContext, request: web.Request) -> str | None:
    if policy.get(ctx.home, "federation.mode") != "friends":
        # Public reads need no signature; one that fails (a proxy rewrote the URI, say) is ignored.
        try:
            return await requester(ctx, request)
        except Unauthorized:
            return None
    did = await requester(ctx, request)
    if did is None:
        raise Unauthorized("this node shares its index with friends only: sign the request (RFC 9421)")
    if not roster.is_friend(ctx.home, did):
        raise Forbidden("this node shares its index with friends only")
    return did


def publisher_of(ctx: NodeContext) -> Publisher:
    pub = ctx.extras.get("publisher")
    if pub is None:
        pub = Publisher(ctx.home, ctx.base_url)
        ctx.extras["publisher"] = pub
    return pub  # type: ignore[no-any-return]


async def index_route(request: web.Request) -> web.StreamResponse:
    ctx: NodeContext = request.app[CTX_KEY]
    await check_reader(ctx, request)
    cursor = request.query.get("cursor", "0")
    parse_cursor(cursor)
    raw_limit = request.query.get("limit", str(MAX_SLICE_ENTRIES))
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= len(raw_limit) <= 5
            and 1 <= int(raw_limit) <= MAX_SLICE_ENTRIES):
        raise InputError(f"limit must be a whole number from 1 to {MAX_SLICE_ENTRIES}, not {raw_limit[:40]!r}")
    limit = int(raw_limit)
    pub = publisher_of(ctx)
    etag = pub.etag()
    if not_modified(request, etag):
        return web.Response(status=304, headers={"ETag": etag})
    raw = pub.slice_bytes(cursor, limit)
    return canonical_response(raw, headers={"ETag": etag, "Cache-Control": "no-cache"})


async def artifact_route(request: web.Request) -> web.StreamResponse:
    ctx: NodeContext = request.app[CTX_KEY]
    await check_reader(ctx, request)
    match = ARTIFACT_PATH.match(request.match_info["path"])
    if match is None:
        raise NotFound("no such artefact")
    kind, entry_id = match.groups()
    # The publisher's snapshot is cached by the log head: no catalogue read per request.
    entry = publisher_of(ctx).snapshot().live.get(entry_id)
    if entry is None or entry["type"] != kind:
        raise NotFound("no such artefact in the index")
    path = object_path(ctx.home, entry["digest"]) if kind == "doc" else shard_path(ctx.home, entry_id)
    if not path.exists():
        raise NotFound("artefact missing from the store")
    return await file_response(request, path, {"Content-Type": "application/octet-stream",
                                               "X-Hn-Digest": entry["digest"]})


async def notify_route(request: web.Request) -> web.Response:
    ctx: NodeContext = request.app[CTX_KEY]
    body = await read_body(request, 4096)
    did = await verify_request(ctx, request, body)
    if not roster.is_friend(ctx.home, did):
        raise Forbidden("notifications are accepted from friends only")
    note = loads_strict(body)
    if not isinstance(note, dict) or "did" not in note or "seq" not in note:
        raise MalformedDocument('a notification is a JSON object {"did": DID, "seq": presence seq}')
    if not is_did(note["did"]):
        raise MalformedDocument("notification did is not a did:hn DID")
    if type(note["seq"]) is not int or note["seq"] < 1:
        raise MalformedDocument("notification seq must be a positive integer")
    if note["did"] != did:
        raise Forbidden(f"a notification signed by {did} may only be about {did}, not {note['did']}")
    worker: Worker = ctx.extras["sync_worker"]
    worker.wake(did)
    return web.json_response({"accepted": True})


class Worker:
    """Background sync: every peer on its own schedule, woken early by notifications.

    Each peer's sync is a task of its own: a friend whose large artefact is still
    downloading delays nobody else's sync, only its own next one.
    """

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.interval = float(ctx.settings.get("sync_interval") or 300)
        self.mirror = bool(ctx.settings.get("mirror", True))
        self.event = asyncio.Event()
        self.woken: set[str] = set()
        # Peers whose last sync raised instead of recording its outcome (this node's state
        # could not be written): not tried again before this time, unless a notification wakes them.
        self.held: dict[str, float] = {}
        self.session: aiohttp.ClientSession | None = None
        self.running: dict[str, asyncio.Task[None]] = {}  # DID -> its sync under way

    def wake(self, did: str) -> None:
        self.woken.add(did)
        self.event.set()

    async def run(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, sock_connect=5))
        try:
            while True:
                await self.tick()
                try:
                    await asyncio.wait_for(self.event.wait(), timeout=WORKER_TICK)
                except TimeoutError:
                    pass
                self.event.clear()
        finally:
            for task in self.running.values():
                task.cancel()
            await asyncio.gather(*self.running.values(), return_exceptions=True)
            await self.session.close()

    async def settle(self) -> None:
        """Wait for the syncs under way."""
        while self.running:
            await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def tick(self) -> None:
        """Start the syncs that are due; those under way go on (see settle)."""
        assert self.session is not None
        now = timefmt.now()
        due = []
        peers = roster.peers(self.ctx.home)
        listed = {peer["did"] for peer in peers}
        self.held = {did: until for did, until in self.held.items() if did in listed}
        for peer in peers:
            did = peer["did"]
            if did in self.running:
                continue  # a notification meanwhile stays in woken: it syncs again once this one ends
            if did in self.woken:
                due.append(peer)
            elif self.held.get(did, 0.0) <= now:
                row = self.ctx.state.peer(did)
                if row is None or row["next_attempt"] <= now:
                    due.append(peer)
        self.woken.intersection_update(self.running)
        if not due:
            return
        syncer = Syncer(self.ctx.home, self.ctx.state, self.ctx.identity, self.session, self.interval)
        for peer in due:
            self.running[peer["did"]] = asyncio.create_task(self._sync(syncer, peer["did"], peer["url"]))

    async def _sync(self, syncer: Syncer, did: str, url: str) -> None:
        try:
            await syncer.refresh_peer(did, url, mirror=self.mirror)
        except Exception as exc:  # recorded here, so no sync's failure escapes the worker
            self._unrecorded(did, exc)
        else:
            self.held.pop(did, None)
        finally:
            self.running.pop(did, None)
            if did in self.woken:
                self.event.set()  # woken while it ran: the next tick starts it again

    def _unrecorded(self, did: str, exc: BaseException) -> None:
        """A sync that ended in an exception left no next attempt in the state: hold the
        peer for one interval here, so a failing disk is not retried every tick."""
        self.held[did] = timefmt.now() + self.interval
        if isinstance(exc, HnError):  # this node's disk, or another sync of the peer under way
            log.warning("federation.sync.unrecorded", extra={"hn": {"did": did, "error": exc.message}})
        else:
            log.error("federation.sync.error", exc_info=exc, extra={"hn": {"did": did}})


class Notifier:
    """Tells friends to sync when our presence (and so our index) changes, whoever changed it."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.seq = 0

    async def run(self) -> None:
        doc = presence.current(self.ctx.home, self.ctx.identity.did)
        self.seq = int(doc["seq"]) if doc else 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            path = presence.path_for(self.ctx.home, self.ctx.identity.did)
            seen: tuple[int, int] | None = None
            while True:
                await asyncio.sleep(PRESENCE_POLL)
                # A stat per tick; the document is read only when the file was replaced.
                try:
                    info = path.stat()
                except OSError:
                    continue
                if (info.st_mtime_ns, info.st_ino) == seen:
                    continue
                seen = (info.st_mtime_ns, info.st_ino)
                doc = presence.current(self.ctx.home, self.ctx.identity.did)
                if doc is None or int(doc["seq"]) == self.seq:
                    continue
                self.seq = int(doc["seq"])
                await asyncio.gather(*(self.notify(session, p["url"], doc) for p in roster.peers(self.ctx.home)),
                                     return_exceptions=True)

    async def notify(self, session: aiohttp.ClientSession, url: str, doc: dict[str, Any]) -> None:
        target = url.rstrip("/") + "/federate/notify"
        body = canonical({"did": self.ctx.identity.did, "seq": doc["seq"]})
        headers = sign_request(self.ctx.identity.keys, "POST", target, body)
        headers["Content-Type"] = "application/json"
        try:
            async with session.post(target, data=body, headers=headers) as resp:
                await resp.read()
        except NETWORK_ERRORS as exc:
            log.debug("federation.notify.failed", extra={"hn": {"url": url, "error": describe(exc)}})


async def setup(ctx: NodeContext) -> None:
    publisher_of(ctx)
    ctx.app.router.add_get("/federate/index", index_route)
    ctx.app.router.add_get("/artifact/{path:.+}", artifact_route)
    ctx.app.router.add_post("/federate/notify", notify_route)
    worker = Worker(ctx)
    ctx.extras["sync_worker"] = worker
    ctx.background.append(worker.run)
    ctx.background.append(Notifier(ctx).run)
