"""Signed documents: `type`, `signer`, `key_seq`, `signature` over JCS(document - signature).

The `type` field is inside the signed bytes, so a signature made for one document type
never verifies as another (verifiers always name the type they expect).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hn.errors import MalformedDocument, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import b64d, b64e, canonical
from hn.proto.keys import IdentityKeys, is_did, verify_ed25519

if TYPE_CHECKING:
    from hn.proto.identity import KeyHistory


def signing_bytes(doc: dict[str, Any], encode: Callable[[Any], bytes] = canonical) -> bytes:
    return encode({k: v for k, v in doc.items() if k != "signature"})


def sign_document(doc: dict[str, Any], keys: IdentityKeys, seq: int | None = None, *,
                  encode: Callable[[Any], bytes] = canonical) -> dict[str, Any]:
    """Return a copy of ``doc`` with signer, key_seq and signature set.

    ``encode`` must give the JCS bytes of a document; a caller that already holds the
    encoding of a large part may pass a faster equivalent (see ``canonical.Splicer``).
    """
    if "type" not in doc:
        raise MalformedDocument("a signed document needs a type")
    key_seq = keys.key_seq if seq is None else seq
    out = {k: v for k, v in doc.items() if k != "signature"}
    out["signer"] = keys.did
    out["key_seq"] = key_seq
    out["signature"] = b64e(keys.sign(signing_bytes(out, encode), key_seq))
    return out


def require(doc: Any, field: str, kind: type | tuple[type, ...], what: str = "document") -> Any:
    if not isinstance(doc, dict):
        raise MalformedDocument(f"{what}: expected a JSON object")
    if field not in doc:
        raise MalformedDocument(f"{what}: missing field {field!r}")
    value = doc[field]
    # bool is an int subclass; a boolean is never a valid integer field
    if isinstance(value, bool) and kind is int:
        raise MalformedDocument(f"{what}: field {field!r} must be an integer")
    if not isinstance(value, kind):
        raise MalformedDocument(f"{what}: field {field!r} has the wrong type")
    return value


def check_envelope(doc: Any, expected_type: str) -> None:
    """Shape checks every signed document shares, before any cryptography."""
    if not isinstance(doc, dict):
        raise MalformedDocument(f"{expected_type}: expected a JSON object")
    doc_type = require(doc, "type", str, expected_type)
    if doc_type != expected_type:
        raise VerificationError(f"expected a {expected_type} document, got {doc_type!r}")
    signer = require(doc, "signer", str, expected_type)
    if not is_did(signer):
        raise MalformedDocument(f"{expected_type}: signer is not a did:hn DID")
    key_seq = require(doc, "key_seq", int, expected_type)
    if key_seq < 0:
        raise MalformedDocument(f"{expected_type}: key_seq must not be negative")
    b64d(require(doc, "signature", str, expected_type), length=64, what="signature")


def verify_document(
    doc: Any, history: KeyHistory, expected_type: str, *, time_field: str = "issued_at",
    encode: Callable[[Any], bytes] = canonical,
) -> dict[str, Any]:
    """Verify a signed document against the signer's key history.

    A document signed with a key that has since been rotated out verifies only if it
    says it was issued before that rotation: old documents keep verifying, new ones made
    with an old key do not.
    """
    check_envelope(doc, expected_type)
    if doc["signer"] != history.did:
        raise VerificationError(
            f"{expected_type} is signed by {doc['signer']}, expected {history.did}"
        )
    key_seq = doc["key_seq"]
    if key_seq >= len(history.keys):
        raise VerificationError(
            f"{expected_type} names key {key_seq}, but the key history of {history.did} "
            f"ends at key {len(history.keys) - 1}"
        )
    public = history.keys[key_seq].signing_public_key
    signature = b64d(doc["signature"], length=64, what="signature")
    if not verify_ed25519(public, signing_bytes(doc, encode), signature):
        raise VerificationError(f"{expected_type} signature does not verify (key {key_seq})")
    if key_seq + 1 < len(history.keys):
        issued = timefmt.parse(require(doc, time_field, str, expected_type), time_field)
        rotated = history.keys[key_seq + 1].created_at
        # Timestamps have whole seconds: a document of the rotation's own second is accepted.
        if issued > rotated:
            raise VerificationError(
                f"{expected_type} was signed with key {key_seq} after that key was rotated out"
            )
    return doc
