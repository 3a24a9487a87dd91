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

from hn.errors import MalformedDocument, VerificationError
from hn.proto import shard, timefmt
from hn.proto.events import EVENT_TYPE, make_event, verify_event
from hn.proto.identity import IDENTITY_TYPE, KEY_TYPE, verify_identity, verify_key_history
from hn.proto.index import INDEX_TYPE, build_slice, verify_slice
from hn.proto.keys import IdentityKeys
from hn.proto.presence import PRESENCE_TYPE, verify_presence
from hn.proto.signed import verify_document

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
SECRET = bytes(range(32))


def test_every_signed_type_only_verifies_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timefmt, "now", lambda: 1767225600.0)
    genesis = json.loads((VECTORS / "identity.json").read_text())["genesis"]
    history = verify_identity(genesis)
    keys = IdentityKeys(SECRET, 0)
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
    }

    def shard_header(doc: dict[str, Any]) -> None:
        from hn.proto.canonical import canonical

        raw = canonical(doc)
        parsed, _ = shard.read_header(io.BytesIO(shard.MAGIC + len(raw).to_bytes(4, "big") + raw))
        verify_document(parsed, history, shard.SHARD_TYPE)

    verifiers: dict[str, Callable[[dict[str, Any]], object]] = {
        IDENTITY_TYPE: verify_identity,
        KEY_TYPE: lambda d: verify_key_history(history.did, [d]),
        PRESENCE_TYPE: lambda d: verify_presence(d, history),
        EVENT_TYPE: lambda d: verify_event(d, history, 1, "0" * 64),
        INDEX_TYPE: lambda d: verify_slice(d, history, presence),
        shard.SHARD_TYPE: shard_header,
    }
    assert set(docs) == set(verifiers)
    accepted = []
    for doc_type, doc in docs.items():
        for verifier_type, verify in verifiers.items():
            if doc_type == verifier_type:
                verify(doc)
                accepted.append(doc_type)
                continue
            relabelled = dict(doc, type=verifier_type)
            for candidate in (doc, relabelled):
                with pytest.raises((VerificationError, MalformedDocument)):
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
