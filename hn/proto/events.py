"""event@1: entries of the vault's append-only, hash-chained, signed event log."""

from __future__ import annotations

from typing import Any

from hn.errors import MalformedDocument, VerificationError
from hn.proto.canonical import doc_digest, is_hex_digest
from hn.proto.identity import KeyHistory
from hn.proto.keys import IdentityKeys
from hn.proto.signed import check_envelope, require, sign_document, verify_document

EVENT_TYPE = "event@1"
GENESIS_PREV = "0" * 64


def make_event(
    keys: IdentityKeys, seq: int, prev: str, kind: str, data: dict[str, Any], issued_at: str
) -> dict[str, Any]:
    return sign_document(
        {"type": EVENT_TYPE, "seq": seq, "prev": prev, "kind": kind, "data": data, "issued_at": issued_at},
        keys,
    )


def event_hash(event: dict[str, Any]) -> str:
    return doc_digest(event)


def check_event(event: Any, expected_seq: int, expected_prev: str) -> dict[str, Any]:
    check_envelope(event, EVENT_TYPE)
    if require(event, "seq", int, EVENT_TYPE) != expected_seq:
        raise VerificationError(f"event {expected_seq}: sequence number is {event['seq']}")
    prev = require(event, "prev", str, EVENT_TYPE)
    if not is_hex_digest(prev):
        raise MalformedDocument(f"event {expected_seq}: prev is not a digest")
    if prev != expected_prev:
        raise VerificationError(f"event {expected_seq}: hash chain broken (prev does not match)")
    require(event, "kind", str, EVENT_TYPE)
    require(event, "data", dict, EVENT_TYPE)
    require(event, "issued_at", str, EVENT_TYPE)
    return event


def verify_event(event: Any, history: KeyHistory, expected_seq: int, expected_prev: str) -> str:
    """Check one entry against its predecessor and signer; returns its hash."""
    check_event(event, expected_seq, expected_prev)
    verify_document(event, history, EVENT_TYPE)
    return event_hash(event)
