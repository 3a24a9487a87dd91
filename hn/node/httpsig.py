"""RFC 9421 HTTP Message Signatures between nodes (alg ed25519, keyid = signer DID).

Covered: @method, @target-uri and content-digest (RFC 9530, sha-256), with the
``created`` and ``nonce`` parameters. The verifier refuses a signature created more
than 300 s before or after its clock, a nonce it has seen within that window, an
unknown DID, a key that is not the signer's current key, a body whose digest differs,
and a target URI that is not its own (so a request captured for one node is refused by
another).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Any

import http_message_signatures as hms
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from multidict import CIMultiDict

from hn.errors import Unauthorized
from hn.proto import timefmt
from hn.proto.keys import IdentityKeys, is_did
from hn.vault import identities

if TYPE_CHECKING:
    from hn.node.context import NodeContext

WINDOW = 300
COVERED = ("@method", "@target-uri", "content-digest")


class _Message:
    def __init__(self, method: str, url: str, headers: Any) -> None:
        self.method = method
        self.url = url
        self.headers = headers


class _Keys(hms.HTTPSignatureKeyResolver):
    def __init__(self, private: Ed25519PrivateKey | None = None, public: Ed25519PublicKey | None = None) -> None:
        self.private = private
        self.public = public

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert self.private is not None
        return self.private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self.public


def _outside_window(created: int) -> str | None:
    skew = created - timefmt.now()
    if abs(skew) <= WINDOW:
        return None
    side = "ahead of" if skew > 0 else "behind"
    return (f"signature created outside the ±{WINDOW} s window: the signer's clock is about {round(abs(skew))} s "
            f"{side} this node's; check the clocks of both machines")


class _ClockSkew(hms.InvalidSignature):
    """``created`` is outside the window: most often a clock that is off."""


class _Verifier(hms.HTTPMessageVerifier):
    """The library compares ``created`` with its own wall clock and a 5 s skew; the
    protocol allows ±300 s against the node's clock (timefmt.now, which tests move)."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        created = sig_input.params.get("created")
        if type(created) is not int:
            raise hms.InvalidSignature('signature has no integer "created" parameter')
        if (refusal := _outside_window(created)) is not None:
            raise _ClockSkew(refusal)
        now = timefmt.now()
        expires = sig_input.params.get("expires")
        if expires is not None and (type(expires) is not int or expires < now):
            raise hms.InvalidSignature("signature has expired")


def sign_request(keys: IdentityKeys, method: str, url: str, body: bytes) -> dict[str, str]:
    """Headers that sign this request as ``keys.did`` with its current key."""
    seed = bytes(keys.signing_key())[:32]
    private = Ed25519PrivateKey.from_private_bytes(seed)
    message = _Message(method.upper(), url, CIMultiDict())
    signer = hms.HTTPMessageSigner(signature_algorithm=hms.algorithms.ED25519, key_resolver=_Keys(private))
    signer.sign(
        message, key_id=keys.did, created=dt.datetime.fromtimestamp(int(timefmt.now()), tz=dt.UTC),
        nonce=os.urandom(16).hex(), label="hn", covered_component_ids=COVERED, body=body,
    )
    return {k: v for k, v in message.headers.items()}


def _keyid(headers: Any) -> str:
    raw = headers.get("Signature-Input", "")
    marker = 'keyid="'
    start = raw.find(marker)
    if start < 0:
        raise Unauthorized("request is not signed (RFC 9421 Signature-Input missing)")
    end = raw.find('"', start + len(marker))
    did = raw[start + len(marker):end]
    if not is_did(did):
        raise Unauthorized("signature keyid is not a did:hn DID")
    return did


async def verify_request(ctx: NodeContext, request: web.Request, body: bytes) -> str:
    """Verify the RFC 9421 signature of ``request``; returns the signer's DID."""
    headers = CIMultiDict(request.headers)
    if "Signature" not in headers or "Signature-Input" not in headers:
        raise Unauthorized("request is not signed (RFC 9421)")
    did = _keyid(headers)
    history = identities.known_history(ctx.home, did)
    if history is None:
        raise Unauthorized(f"unknown signer {did}: this node has not pinned its identity")
    public = Ed25519PublicKey.from_public_bytes(history.current.signing_public_key)
    url = ctx.base_url.rstrip("/") + str(request.rel_url)
    verifier = _Verifier(signature_algorithm=hms.algorithms.ED25519, key_resolver=_Keys(public=public))
    try:
        results = verifier.verify(_Message(request.method, url, headers), body=body, max_age=None,
                                  require_components=COVERED)
    except _ClockSkew as exc:
        raise Unauthorized(str(exc)) from exc
    except Exception as exc:  # the library raises several types for bad signatures
        # Most often after `hn id rotate`: say which key this node holds, and the way out.
        raise Unauthorized(
            f"signature does not verify against key {history.current.seq} of {did}, the newest this node "
            f"knows ({exc}); if that identity has rotated its key since, this node learns the new key at its "
            "next federation sync with it if it federates with it, or else from its new identity export "
            "(hn id export, then hn id import on this node)") from exc
    params = results[0].parameters
    created = params.get("created")
    nonce = params.get("nonce")
    # The verifier has checked this already; checked again here whatever the library does.
    if not isinstance(created, int):
        raise Unauthorized("signature has no creation time")
    if (refusal := _outside_window(created)) is not None:
        raise Unauthorized(refusal)
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
        raise Unauthorized("signature has no valid nonce")
    if not ctx.state.remember_nonce(did, nonce, created + WINDOW):
        raise Unauthorized("replayed request (nonce seen before)")
    return did
