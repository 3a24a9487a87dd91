"""THREATS 18: a signature made for one document type never verifies as another.

Every signed type in hn.proto is fed to every verifier, as it is and relabelled with the
verifier's type (same signature): only its own verifier accepts it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto import backup, dht_hint, merkle, shard, timefmt, trust
from hn.proto.canonical import b64e, canonical, loads_canonical
from hn.proto.events import EVENT_TYPE, make_event, verify_event
from hn.proto.identity import IDENTITY_TYPE, KEY_TYPE, verify_identity, verify_key_history
from hn.proto.index import INDEX_TYPE, build_slice, verify_slice
from hn.proto.keys import IdentityKeys
from hn.proto.presence import PRESENCE_TYPE, verify_presence
from hn.proto.signed import sign_document, verify_document

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
SECRET = bytes(range(32))
OTHER = IdentityKeys(bytes(32), 0)


def backup_header(keys: IdentityKeys, identity: dict[str, Any]) -> dict[str, Any]:
    entries = [{"path": "events/000000000001.json", "digest": "2" * 64, "size": 10, "mode": 0o644, "stored": True}]
    header: dict[str, Any] = {
        "type": backup.BACKUP_TYPE, "owner": keys.did, "created_at": "2026-01-10T00:00:00Z", "scope": "full",
        "base_backup": None, "target": None, "recipient": keys.did, "recipient_key_seq": 0,
        "recipient_key_id": "3" * 32, "enc": b64e(bytes(32)),
        "algorithm": {"hpke": backup.SUITE_NAME, "compression": backup.COMPRESSION, "archive": backup.ARCHIVE,
                      "chunk_size": 1 << 20},
        "payload": {"digest": "4" * 64, "size": 100, "compressed_size": 100, "archive_size": 4096},
        "entries": entries, "merkle_root": merkle.root([bytes.fromhex(e["digest"]) for e in entries]).hex(),
        "identity": identity,
    }
    header["id"] = backup.compute_id(header)
    return sign_document(header, keys)


UNSIGNED = {"relay@1"}  # an entry inside presence@2, covered by its signature


def declared_signed_types() -> set[str]:
    """Every `X_TYPE = "name@N"` constant in hn/proto: a new signed type must join this test."""
    import re

    folder = Path(__file__).resolve().parents[2] / "hn" / "proto"
    found = set()
    for path in folder.glob("*.py"):
        found.update(re.findall(r'^[A-Z_]*TYPE = "([a-z_0-9]+@[0-9]+)"', path.read_text(), flags=re.M))
    return found - UNSIGNED


def test_every_signed_type_only_verifies_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timefmt, "now", lambda: 1767225600.0)
    genesis = json.loads((VECTORS / "identity.json").read_text())["genesis"]
    history = verify_identity(genesis)
    keys = IdentityKeys(SECRET, 0)
    evidence = json.loads((VECTORS / "trust.json").read_text())["evidence"]
    link = trust.build_link(keys, OTHER.did, evidence, context="general", ttl_seconds=86400,
                            issued_at="2026-01-10T00:00:00Z")
    presence = json.loads((VECTORS / "presence.json").read_text())["presence"]
    out = io.BytesIO()
    header = shard.seal(keys, keys.did, 0, keys.hpke_public(0), {"size": 1, "digest": "0" * 64},
                        io.BytesIO(b"x"), out, "2026-01-01T00:00:00Z", chunk_size=1024)
    docs: dict[str, dict[str, Any]] = {
        IDENTITY_TYPE: genesis,
        KEY_TYPE: genesis["keys"][0],
        PRESENCE_TYPE: presence,
        EVENT_TYPE: make_event(keys, 1, "0" * 64, "x", {}, "2026-01-01T00:00:00Z"),
        INDEX_TYPE: build_slice(keys, "http://127.0.0.1:1", presence, "0", "0", False, [], "2026-01-01T00:00:00Z"),
        shard.SHARD_TYPE: header,
        dht_hint.HINT_TYPE: loads_canonical(dht_hint.build_hint(
            keys, history, seq=1, presence_digest="1" * 64, presence_url="http://127.0.0.1:1/p",
            issued_at=1767225600.0)),
        trust.LINK_TYPE: link,
        trust.REPUTATION_TYPE: trust.sign_reputation(
            keys, trust.reputation_body(keys.did, OTHER.did, [link], "default"), 1, "2026-01-10T00:00:00Z"),
        backup.BACKUP_TYPE: backup_header(keys, genesis),
    }

    def shard_header(doc: dict[str, Any]) -> None:
        raw = canonical(doc)
        parsed, _ = shard.read_header(io.BytesIO(shard.MAGIC + len(raw).to_bytes(4, "big") + raw))
        verify_document(parsed, history, shard.SHARD_TYPE)

    def hint(doc: dict[str, Any]) -> None:
        parsed = dht_hint.parse_hint(canonical(doc))
        verify_document(parsed.doc, history, dht_hint.HINT_TYPE)

    verifiers: dict[str, Callable[[dict[str, Any]], object]] = {
        IDENTITY_TYPE: verify_identity,
        KEY_TYPE: lambda d: verify_key_history(history.did, [d]),
        PRESENCE_TYPE: lambda d: verify_presence(d, history),
        EVENT_TYPE: lambda d: verify_event(d, history, 1, "0" * 64),
        INDEX_TYPE: lambda d: verify_slice(d, history, presence),
        shard.SHARD_TYPE: shard_header,
        dht_hint.HINT_TYPE: hint,
        trust.LINK_TYPE: lambda d: trust.verify_link(d, history),
        trust.REPUTATION_TYPE: lambda d: trust.verify_reputation(d, history),
        backup.BACKUP_TYPE: lambda d: backup.verify_header(d, history),
    }
    assert set(docs) == set(verifiers) == declared_signed_types()
    accepted = []
    for doc_type, doc in docs.items():
        for verifier_type, verify in verifiers.items():
            if doc_type == verifier_type:
                verify(doc)
                accepted.append(doc_type)
                continue
            relabelled = dict(doc, type=verifier_type)
            for candidate in (doc, relabelled):
                with pytest.raises((VerificationError, MalformedDocument, TooLarge)):
                    verify(candidate)
    assert accepted == list(docs)


def test_relabelled_document_fails_on_the_signature_not_only_the_shape() -> None:
    """Even a relabelled document that has every field its new type needs fails: type is signed."""
    keys = IdentityKeys(SECRET, 0)
    genesis = json.loads((VECTORS / "identity.json").read_text())["genesis"]
    history = verify_identity(genesis)
    event = make_event(keys, 1, "0" * 64, "x", {}, "2026-01-01T00:00:00Z")
    relabelled = dict(event, type="note@1")
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_document(relabelled, history, "note@1")
