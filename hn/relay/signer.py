"""Who signed a relay push, including a signer this node has not pinned.

A push carries its signer's identity@1, which is self-certifying: the DID is derived from
its genesis key and every later key is signed by the one before. When policy relay.accept
admits a DID this node holds no identity for (``allow``, an ``allowlist`` entry, or a
reputation selector), the push's RFC 9421 signature is checked against that offered
history, after it has been checked against the one this relay pinned with the peer's
relayed record, if any (no rollback, no fork). Such a signer is not made a contact: being
relayed here must not make a stranger a friend for every other policy.

``verify_with_history`` is ``hn.node.httpsig.verify_request`` with the key history given
instead of looked up among the pinned identities; it reuses that module's checks so both
refuse the same requests with the same reasons.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from multidict import CIMultiDict

from hn.errors import Unauthorized
from hn.node import httpsig
from hn.node.context import NodeContext
from hn.proto.identity import KeyHistory


def claimed_signer(request: web.Request) -> str:
    """The DID a request says signed it (its keyid), not yet verified; 401 if unsigned."""
    headers = CIMultiDict(request.headers)
    if "Signature" not in headers or "Signature-Input" not in headers:
        raise Unauthorized("request is not signed (RFC 9421)")
    return httpsig._keyid(headers)


def verify_with_history(ctx: NodeContext, request: web.Request, body: bytes, history: KeyHistory) -> str:
    """Verify the RFC 9421 signature of ``request`` against ``history``; returns the signer's DID."""
    headers: Any = CIMultiDict(request.headers)
    did = claimed_signer(request)
    if did != history.did:
        raise Unauthorized(f"the request is signed as {did}, not {history.did}")
    public = Ed25519PublicKey.from_public_bytes(history.current.signing_public_key)
    url = ctx.base_url.rstrip("/") + str(request.rel_url)
    try:
        results = httpsig._check(public, request.method, url, headers, body)
    except httpsig._ClockSkew as exc:
        raise Unauthorized(str(exc)) from exc
    except Exception as exc:  # the library raises several types for bad signatures
        raise Unauthorized(httpsig._refusal(ctx, request, headers, body, history, did, url, exc)) from exc
    params = results[0].parameters
    created = params.get("created")
    nonce = params.get("nonce")
    if not isinstance(created, int):
        raise Unauthorized("signature has no creation time")
    if (refusal := httpsig._outside_window(created)) is not None:
        raise Unauthorized(refusal)
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
        raise Unauthorized("signature has no valid nonce")
    if not ctx.state.remember_nonce(did, nonce, created + httpsig.WINDOW):
        raise Unauthorized("replayed request (nonce seen before)")
    return did
