"""Node routes for backups friends push here (spec/backup@1.md, "Node side").

POST /backup                      signed by the owner; body = backup@1 header; opens or resumes an upload
PUT  /backup/{id}/blob?offset=N   signed by the owner; body = the next payload segment
GET  /backup?owner=DID            committed backups of an owner (ids, sizes, chain links)
GET  /backup/{id}                 the signed header
GET  /backup/{id}/blob            the encrypted payload, streamed
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiohttp import web

from hn.backup.hosted import HostedStore, Limits
from hn.errors import InputError, MalformedDocument, NotFound, Unauthorized
from hn.node.context import NodeContext
from hn.node.http import canonical_response, file_response, read_body
from hn.node.httpsig import verify_request
from hn.proto import backup as proto
from hn.proto.keys import is_did
from hn.vault import identities

SEGMENT_CAP = 16 << 20
STORE_KEY: web.AppKey[HostedStore] = web.AppKey("hn_backup_store", HostedStore)


def check_accept(ctx: NodeContext, did: str) -> None:
    """policy backup.accept: friends (roster or contacts), allowlist, or a reputation selector."""
    from hn.trust import selectors

    selectors.require(ctx.home, "backup.accept", did, "backup")


async def setup(ctx: NodeContext) -> None:
    limits = Limits.from_settings(ctx.settings, ctx.home.read_toml("node.toml"))
    store = HostedStore(ctx.home, limits)
    ctx.app[STORE_KEY] = store
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def upload(request: web.Request) -> web.Response:
        body = await read_body(request, limits.max_header)
        signer = await verify_request(ctx, request, body)
        header = proto.parse_header(body)
        if not is_did(header.get("owner")):
            raise MalformedDocument(f"{proto.BACKUP_TYPE} header has no owner DID")
        if header["owner"] != signer:
            raise Unauthorized(f"the request is signed by {signer}, the backup belongs to {header.get('owner')}")
        check_accept(ctx, signer)
        proto.verify_header(header, identities.known_history(ctx.home, signer), signer)
        async with locks[header["id"]]:
            status = await asyncio.to_thread(store.begin, body, header, ctx.identity.did)
        return web.json_response(status)

    async def upload_segment(request: web.Request) -> web.Response:
        backup_id = request.match_info["id"]
        try:
            offset = int(request.query.get("offset", ""))
        except ValueError as exc:
            raise InputError("offset must be an integer") from exc
        if offset < 0:
            raise InputError("offset must not be negative")
        body = await read_body(request, SEGMENT_CAP)
        signer = await verify_request(ctx, request, body)
        check_accept(ctx, signer)
        if not proto.is_backup_id(backup_id):
            raise NotFound(f"no backup {backup_id!r}")
        async with locks[backup_id]:
            status = await asyncio.to_thread(store.append, signer, backup_id, offset, body)
            digest = status.pop("stored_now", None)
            if digest:
                await asyncio.to_thread(record_stored, signer, backup_id, digest)
        return web.json_response(status)

    def record_stored(owner: str, backup_id: str, digest: str) -> None:
        """A friend's backup now held here: evidence (backup:ID) for trust links to them."""
        with ctx.home.lock():
            ctx.home.append_event(ctx.identity.keys, "backup.store", {"id": backup_id, "owner": owner,
                                                                      "digest": digest})

    async def listing(request: web.Request) -> web.Response:
        owner = request.query.get("owner", "")
        if not is_did(owner):
            raise MalformedDocument("owner must be a did:hn DID")
        return web.json_response({"owner": owner, "backups": await asyncio.to_thread(store.listing, owner)})

    async def header(request: web.Request) -> web.Response:
        path = store.find(request.match_info["id"])
        return canonical_response(await asyncio.to_thread(path.read_bytes))

    async def blob(request: web.Request) -> web.StreamResponse:
        path = store.payload_of(store.find(request.match_info["id"]))
        if not path.exists():
            raise NotFound("payload missing")
        return await file_response(request, path, {"Content-Type": "application/octet-stream"}, chunk_size=1 << 20)

    ctx.app.router.add_post("/backup", upload)
    ctx.app.router.add_get("/backup", listing)
    ctx.app.router.add_get("/backup/{id}", header)
    ctx.app.router.add_put("/backup/{id}/blob", upload_segment)
    ctx.app.router.add_get("/backup/{id}/blob", blob)
    ctx.ready_info["backup"] = {"keep_last": limits.keep_last, "quota": limits.quota}
