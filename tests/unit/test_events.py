from __future__ import annotations

import json
from pathlib import Path

import pytest

from hn.errors import MalformedDocument, VerificationError
from hn.proto.events import GENESIS_PREV, event_hash, make_event, verify_event
from hn.proto.identity import verify_identity
from hn.proto.keys import IdentityKeys
from hn.proto.signed import sign_document

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
KEYS = IdentityKeys(bytes(range(32)), 0)
HISTORY = verify_identity(json.loads((VECTORS / "identity.json").read_text())["genesis"])


def chain(n: int) -> list[dict]:
    out, prev = [], GENESIS_PREV
    for seq in range(1, n + 1):
        event = make_event(KEYS, seq, prev, "doc.add", {"n": seq}, "2026-01-01T00:00:00Z")
        out.append(event)
        prev = event_hash(event)
    return out


def verify_chain(events: list[dict]) -> str:
    prev = GENESIS_PREV
    for seq, event in enumerate(events, start=1):
        prev = verify_event(event, HISTORY, seq, prev)
    return prev


def test_chain_verifies_and_head_is_last_hash() -> None:
    events = chain(4)
    assert verify_chain(events) == event_hash(events[-1])


def test_dropped_reordered_or_edited_entries_refused() -> None:
    events = chain(4)
    with pytest.raises(VerificationError, match="sequence number"):
        verify_chain(events[:1] + events[2:])
    with pytest.raises(VerificationError, match="sequence number"):
        verify_chain([events[1], events[0], *events[2:]])
    edited = dict(events[1], data={"n": 99})
    with pytest.raises(VerificationError, match="signature"):
        verify_chain([events[0], edited, *events[2:]])
    # re-signing an edited entry does not help: the next entry's prev no longer matches
    resigned = sign_document(edited, KEYS)
    with pytest.raises(VerificationError, match="hash chain broken"):
        verify_chain([events[0], resigned, *events[2:]])


def test_foreign_signer_and_bad_shapes_refused() -> None:
    other = IdentityKeys(bytes(32), 0)
    with pytest.raises(VerificationError, match="signed by"):
        verify_event(make_event(other, 1, GENESIS_PREV, "x", {}, "2026-01-01T00:00:00Z"), HISTORY, 1, GENESIS_PREV)
    with pytest.raises(MalformedDocument, match="prev is not a digest"):
        verify_event(make_event(KEYS, 1, "abc", "x", {}, "2026-01-01T00:00:00Z"), HISTORY, 1, GENESIS_PREV)
    bad = sign_document({"type": "event@1", "seq": 1, "prev": GENESIS_PREV, "kind": "x", "data": [],
                         "issued_at": "2026-01-01T00:00:00Z"}, KEYS)
    with pytest.raises(MalformedDocument, match="'data'"):
        verify_event(bad, HISTORY, 1, GENESIS_PREV)
