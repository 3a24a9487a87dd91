"""RFC 9421 HTTP Message Signatures between nodes (alg ed25519, keyid = signer DID).

Covered: @method, @target-uri and content-digest (RFC 9530, sha-256), with the
``created`` and ``nonce`` parameters. The verifier refuses a signature created more
than 300 s before or after its clock, a nonce it has seen within that window, an
unknown DID, a key that is not the signer's current key, a body whose digest differs,
and a target URI that is not its own (so a request captured for one node is refused by
another).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from typing import TYPE_CHECKING, Any

import http_message_signatures as hms
from aiohttp import web
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from multidict import CIMultiDict

from hn.errors import Unauthorized
from hn.proto import timefmt
from hn.proto.identity import KeyHistory
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
        raise Unauthorized("the RFC 9421 Signature-Input header is malformed: it names no keyid")
    end = raw.find('"', start + len(marker))
    did = raw[start + len(marker):end]
    if not is_did(did):
        raise Unauthorized("signature keyid is not a did:hn DID")
    return did


def _check(public: Ed25519PublicKey, method: str, url: str, headers: Any, body: bytes) -> list[Any]:
    verifier = _Verifier(signature_algorithm=hms.algorithms.ED25519, key_resolver=_Keys(public=public))
    return verifier.verify(_Message(method, url, headers), body=body, max_age=None,  # type: ignore[no-any-return]
                           require_components=COVERED)


def _cryptographic(exc: BaseException) -> bool:
    """Did the signature itself fail to verify (as opposed to a header, a parameter, a
    covered component or the body digest being wrong)?"""
    return isinstance(exc.__cause__, CryptoInvalidSignature)


def _other_uris(request: web.Request, url: str) -> list[str]:
    """Target URIs the signer may have meant: the URL this request was addressed to as it
    arrived (Host header, scheme), and as a reverse proxy says it was (X-Forwarded-Host
    and -Proto). Only used to say why a signature failed, never to accept one."""
    target = str(request.rel_url)
    hosts = [h for h in (request.headers.get("X-Forwarded-Host"), request.host) if h]
    schemes = [s for s in (request.headers.get("X-Forwarded-Proto"), request.scheme, "https", "http") if s]
    seen = {url}
    out = []
    for host in hosts:
        for scheme in schemes:
            candidate = f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}{target}"
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out


def _digest_problem(headers: Any, body: bytes) -> str | None:
    """What is wrong with the request's Content-Digest (RFC 9530) for ``body``, if anything."""
    value = headers.get("Content-Digest")
    if value is None:
        return "the request has no Content-Digest header (RFC 9530), which its signature must cover"
    members = {}
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        members[key.strip().lower()] = item.strip()
    if "sha-256" not in members:
        return "the request's Content-Digest has no sha-256 member (RFC 9530), the one this node checks"
    if members["sha-256"] != ":" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":":
        return ("the request's Content-Digest sha-256 does not match its body (RFC 9530): the body or the "
                "header was changed on the way")
    return None


def _refusal(ctx: NodeContext, request: web.Request, headers: Any, body: bytes, history: KeyHistory,
             did: str, url: str, exc: Exception) -> str:
    """Why a signature was refused, as precisely as this node can tell."""
    current = history.current
    if not _cryptographic(exc):
        reason = str(exc) or type(exc).__name__
        if "Content-Digest does not match" in reason:
            return ("the request body does not match its signed Content-Digest (RFC 9530): the body was changed "
                    "on the way, or the signer digested other bytes than it sent")
        return f"signature refused: {reason}"
    if (problem := _digest_problem(headers, body)) is not None:
        return problem  # the header the signature covers was changed, not the key
    public = Ed25519PublicKey.from_public_bytes(current.signing_public_key)
    for candidate in _other_uris(request, url):
        try:
            _check(public, request.method, candidate, headers, body)
        except Exception:  # only looking for the URI that was signed
            continue
        return (f"the signature covers @target-uri {candidate}, but this node checks {url} (its public URL is "
                f"{ctx.base_url}): if friends reach this node at another URL (a reverse proxy, another host "
                "name, port or scheme), set that URL with hn mcp serve --public-url")
    for older in reversed(history.keys[:-1]):
        try:
            _check(Ed25519PublicKey.from_public_bytes(older.signing_public_key), request.method, url, headers, body)
        except Exception:  # only looking for the key that signed
            continue
        return (f"signed with key {older.seq} of {did}, which that identity has since rotated away from (this "
                f"node knows key {current.seq}); requests must be signed with the current key")
    # Most often after `hn id rotate`: say which key this node holds, and the way out.
    return (f"signature does not verify against key {current.seq} of {did}, the newest this node knows "
            f"(over @method {request.method}, @target-uri {url} and the Content-Digest); if that identity has "
            "rotated its key since, this node learns the new key at its next federation sync with it if it "
            "federates with it, or else from its new identity export (hn id export, then hn id import on this "
            "node)")


def claimed_signer(request: web.Request) -> str:
    """The DID a request says signed it (its keyid), not yet verified; 401 if unsigned."""
    headers = request.headers
    if "Signature" not in headers or "Signature-Input" not in headers:
        raise Unauthorized("request is not signed (RFC 9421)")
    return _keyid(headers)


async def verify_request(ctx: NodeContext, request: web.Request, body: bytes,
                         history: KeyHistory | None = None) -> str:
    """Verify the RFC 9421 signature of ``request``; returns the signer's DID.

    ``history``: the signer's key history when the caller has it from elsewhere (a
    self-certifying identity@1 the request carries, checked by the caller), instead of
    the identities this node has pinned."""
    headers = CIMultiDict(request.headers)
    did = claimed_signer(request)
    if history is None:
        history = identities.known_history(ctx.home, did)
        if history is None:
            raise Unauthorized(f"unknown signer {did}: this node has not pinned its identity")
    elif history.did != did:
        raise Unauthorized(f"the request is signed as {did}, not {history.did}")
    public = Ed25519PublicKey.from_public_bytes(history.current.signing_public_key)
    url = ctx.base_url.rstrip("/") + str(request.rel_url)
    try:
        results = _check(public, request.method, url, headers, body)
    except _ClockSkew as exc:
        raise Unauthorized(str(exc)) from exc
    except Exception as exc:  # the library raises several types for bad signatures
        raise Unauthorized(_refusal(ctx, request, headers, body, history, did, url, exc)) from exc
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
