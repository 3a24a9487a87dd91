"""Trust routes of the node.

``GET /trust/{did}``: my published reputation@1 about ``did``, only to requesters that
policy ``trust.exposure`` allows (a signed request names the requester; an unsigned one
is anonymous and only a '*' value can admit it). Refusals are 403 and are decided before
anything is looked up, so they never reveal whether a reputation exists.

``GET /trust/{did}/links``: the headers (no evidence) of my live links about ``did``; for
``did`` = my own DID, all my live links (my edges in the graph). Friends only: the
request must be signed by a DID in my federation roster or my contacts.
"""

from __future__ import annotations

import logging

from aiohttp import web

from hn.errors import Forbidden, Unauthorized
from hn.node.context import CTX_KEY, NodeContext
from hn.node.http import canonical_response, did_param
from hn.node.httpsig import verify_request
from hn.proto.canonical import canonical
from hn.trust import links, reputation, selectors
from hn.vault import identities

log = logging.getLogger("hn.trust")
LINKS_TYPE = "trust_links@1"


async def _requester(ctx: NodeContext, request: web.Request) -> str | None:
    if "Signature" not in request.headers and "Signature-Input" not in request.headers:
        return None
    return await verify_request(ctx, request, b"")


async def reputation_route(request: web.Request) -> web.StreamResponse:
    ctx: NodeContext = request.app[CTX_KEY]
    target = did_param(request)
    requester = await _requester(ctx, request)
    allowed, reason = selectors.allows(ctx.home, "trust.exposure", requester)
    if not allowed:
        log.info("trust.exposure.denied", extra={"hn": {"requester": requester, "reason": reason}})
        raise Forbidden("trust.exposure does not allow you to see this node's reputations")
    raw = reputation.published_bytes(ctx.home, ctx.identity.alias, target)
    return canonical_response(raw, headers={"Cache-Control": "no-cache"})


async def links_route(request: web.Request) -> web.StreamResponse:
    ctx: NodeContext = request.app[CTX_KEY]
    target = did_param(request)
    requester = await _requester(ctx, request)
    if requester is None:
        raise Unauthorized("trust links are shown to friends only: sign the request (RFC 9421)")
    if not selectors.is_friend(ctx.home, requester):
        raise Forbidden("trust links are shown to friends only")
    me = identities.load(ctx.home, ctx.identity.alias)
    mine, _ = links.my_links(ctx.home, me, strict=False, target=None if target == me.did else target)
    headers = [s.link for s in mine if s.live and (target == me.did or s.link["to"] == target)]
    body = {"type": LINKS_TYPE, "owner": me.did, "target": target, "links": headers}
    return canonical_response(canonical(body), headers={"Cache-Control": "no-cache"})


async def setup(ctx: NodeContext) -> None:
    ctx.app.router.add_get("/trust/{did}", reputation_route)
    ctx.app.router.add_get("/trust/{did}/links", links_route)
