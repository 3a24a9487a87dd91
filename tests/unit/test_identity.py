from __future__ import annotations

import json
from pathlib import Path

import pytest

from hn.errors import ForkError, RollbackError, VerificationError
from hn.proto.canonical import canonical, doc_digest
from hn.proto.identity import accept_update, build_identity, make_key_entry, verify_identity
from hn.proto.keys import IdentityKeys, did_from_public_key
from hn.proto.presence import verify_presence
from hn.proto.signed import sign_document, verify_document

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
SECRET = bytes(range(32))
GENESIS = "2020-01-01T00:00:00Z"


def history_docs() -> tuple[dict, dict]:
    data = json.loads((VECTORS / "identity.json").read_text())
    return data["genesis"], data["rotated"]


def test_vectors_reproduce() -> None:
    keys0 = IdentityKeys(SECRET, 0)
    genesis, rotated = history_docs()
    entries = [make_key_entry(keys0, 0, GENESIS, None)]
    assert build_identity(keys0, "vector", entries, "2026-01-01T00:00:00Z") == genesis
    did = json.loads((VECTORS / "did.json").read_text())
    assert did_from_public_key(bytes.fromhex(did["public_key_hex"])) == did["did"] == keys0.did
    presence = json.loads((VECTORS / "presence.json").read_text())
    assert canonical(presence["presence"]).decode() == presence["canonical"]
    assert doc_digest(presence["presence"]) == presence["digest"]
    verify_presence(presence["presence"], verify_identity(genesis))
    assert verify_identity(rotated).current.seq == 1


def test_did_is_self_certifying() -> None:
    genesis, _ = history_docs()
    other = IdentityKeys(bytes(32), 0)
    forged = dict(genesis, did=other.did)
    with pytest.raises(VerificationError):
        verify_identity(forged)


def test_rotation_old_documents_verify_new_ones_by_old_key_fail() -> None:
    genesis, rotated = history_docs()
    history = verify_identity(rotated)
    old = sign_document({"type": "note@1", "issued_at": "2026-01-15T00:00:00Z"}, IdentityKeys(SECRET, 0))
    verify_document(old, history, "note@1")
    late = sign_document({"type": "note@1", "issued_at": "2026-03-01T00:00:00Z"}, IdentityKeys(SECRET, 0))
    with pytest.raises(VerificationError, match="rotated out"):
        verify_document(late, history, "note@1")
    new = sign_document({"type": "note@1", "issued_at": "2026-03-01T00:00:00Z"}, IdentityKeys(SECRET, 1))
    verify_document(new, history, "note@1")
    # a key newer than the history knows is refused
    with pytest.raises(VerificationError):
        verify_document(sign_document({"type": "note@1", "issued_at": "2026-03-01T00:00:00Z"},
                                      IdentityKeys(SECRET, 2)), history, "note@1")


def test_history_rollback_and_fork_refused() -> None:
    genesis, rotated = history_docs()
    short, full = verify_identity(genesis), verify_identity(rotated)
    assert accept_update(short, full) is full
    with pytest.raises(RollbackError):
        accept_update(full, short)
    keys1 = IdentityKeys(SECRET, 1)
    entries = list(full.entries[:1]) + [make_key_entry(keys1, 1, "2026-02-02T00:00:00Z", full.entries[0])]
    forked = verify_identity(build_identity(keys1, "vector", entries, "2026-02-02T00:00:00Z"))
    with pytest.raises(ForkError):
        accept_update(full, forked)


def test_tampered_history_refused() -> None:
    _, rotated = history_docs()
    doc = json.loads(json.dumps(rotated))
    doc["keys"][1]["created_at"] = "2026-02-01T00:00:01Z"
    with pytest.raises(VerificationError):
        verify_identity(doc)
    doc = json.loads(json.dumps(rotated))
    doc["keys"][1]["signing_public_key"] = doc["keys"][0]["signing_public_key"]
    with pytest.raises(VerificationError):
        verify_identity(doc)
