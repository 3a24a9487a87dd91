"""presence@2: where a vault's node is and what its index root is (spec/presence@2.md)."""

from __future__ import annotations

from typing import Any

from hn.errors import MalformedDocument, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import b64d, is_hex_digest
from hn.proto.identity import KeyHistory
from hn.proto.keys import is_did
from hn.proto.signed import check_envelope, require, verify_document

PRESENCE_TYPE = "presence@2"
RELAY_TYPE = "relay@1"
MAX_RELAYS = 8
MAX_URL = 2048


def check_url(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise MalformedDocument(f"{what}: expected a URL")
    if not (value.startswith("http://") or value.startswith("https://")):
        raise MalformedDocument(f"{what}: only http and https URLs are allowed")
    return value


def check_presence(doc: Any) -> dict[str, Any]:
    """Shape of a presence@2 document, before its signature is checked."""
    check_envelope(doc, PRESENCE_TYPE)
    what = PRESENCE_TYPE
    if require(doc, "did", str, what) != doc["signer"]:
        raise VerificationError("presence@2 did differs from its signer")
    if require(doc, "seq", int, what) < 1:
        raise MalformedDocument("presence@2 seq must be at least 1")
    timefmt.parse(require(doc, "issued_at", str, what), "issued_at")
    timefmt.parse(require(doc, "expires_at", str, what), "expires_at")
    url = doc.get("url")
    if url is not None:
        check_url(url, "presence@2 url")
    index = require(doc, "index", dict, what)
    if not is_hex_digest(require(index, "root", str, "presence@2 index")):
        raise MalformedDocument("presence@2 index root is not a hex digest")
    if require(index, "size", int, "presence@2 index") < 0:
        raise MalformedDocument("presence@2 index size is negative")
    if require(index, "cursor", int, "presence@2 index") < 0:
        raise MalformedDocument("presence@2 index cursor is negative")
    b64d(require(doc, "hpke_public_key", str, what), length=32, what="hpke_public_key")
    if not is_hex_digest(require(doc, "identity_digest", str, what)):
        raise MalformedDocument("presence@2 identity_digest is not a hex digest")
    relays = require(doc, "relays", list, what)
    if len(relays) > MAX_RELAYS:
        raise MalformedDocument(f"presence@2 lists more than {MAX_RELAYS} relays")
    for relay in relays:
        check_relay(relay)
    return doc


def check_relay(relay: Any) -> None:
    """One relay@1 entry of a presence: its type, DID, URL and expiry time."""
    if not isinstance(relay, dict) or require(relay, "type", str, "relay@1") != RELAY_TYPE:
        raise MalformedDocument("presence@2 relay entry is not relay@1")
    if not is_did(require(relay, "did", str, "relay@1")):
        raise MalformedDocument("relay@1 did is not a DID")
    check_url(require(relay, "url", str, "relay@1"), "relay@1 url")
    timefmt.parse(require(relay, "expires_at", str, "relay@1"), "relay@1 expires_at")


def verify_presence(doc: Any, history: KeyHistory, *, now: float | None = None) -> dict[str, Any]:
    check_presence(doc)
    verify_document(doc, history, PRESENCE_TYPE)
    if now is not None and timefmt.parse(doc["expires_at"]) <= now:
        raise VerificationError(f"presence@2 of {doc['did']} expired at {doc['expires_at']}")
    return doc
