"""Trust routes of the node.

``GET /trust/{did}``: my published reputation@1 about ``did``, only to requesters that
policy ``trust.exposure`` allows (a signed request names the requester; an unsigned one
is anonymous and only a '*' value can admit it). A request signed by a DID this node has
not pinned cannot be verified: it is admitted as an anonymous one when the policy would
admit anyone and has no value of its own for that DID (so who signed changes nothing),
else refused with 401 saying why (403 if the policy denies that DID anyway). A bad
signature of a DID this node has pinned is a 401. Refusals are decided before anything
is looked up, so they never reveal whether a reputation exists.

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
from hn.node.httpsig import claimed_signer, verify_request
from hn.proto.canonical import canonical
from hn.trust import links, reputation, selectors
from hn.vault import identities, policy

log = logging.getLogger("hn.trust")
LINKS_TYPE = "trust_links@1"


async def _requester(ctx: NodeContext, request: web.Request) -> str | None:
    if "Signature" not in request.headers and "Signature-Input" not in request.headers:
        return None
    return await verify_request(ctx, request, b"")


async def _exposure_requester(ctx: NodeContext, request: web.Request) -> str | None:
    """Who asks for a reputation: a verified DID, or None (anonymous). A signer this node
    has not pinned counts as anonymous when that changes nothing (see the module doc)."""
    if "Signature" not in request.headers and "Signature-Input" not in request.headers:
        return None
    claimed = claimed_signer(request)
    if identities.known_history(ctx.home, claimed) is not None:
        return await verify_request(ctx, request, b"")  # a bad signature of a pinned DID is a 401
    own = policy.get(ctx.home, "trust.exposure", claimed)
    # Who signed decides nothing when the policy admits anyone and has no value of its own
    # for the claimed DID: a signature this node cannot check is then no reason to refuse.
    if own == policy.get(ctx.home, "trust.exposure", None) and selectors.allows(ctx.home, "trust.exposure", None)[0]:
        return None
    if own.strip() == "deny":
        raise Forbidden("trust.exposure does not allow you to see this node's reputations")
    raise Unauthorized(
        f"unknown signer {claimed}: this node has not pinned its identity, so it cannot verify the signature, "
        f"and policy trust.exposure ({own!r} for this requester) does not admit anyone unverified; ask this "
        "node's owner to import your identity (hn id import), or to admit anyone (hn policy set trust.exposure "
        "allow --target '*')")


async def reputation_route(request: web.Request) -> web.StreamResponse:
    ctx: NodeContext = request.app[CTX_KEY]
    target = did_param(request)
    requester = await _exposure_requester(ctx, request)
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
