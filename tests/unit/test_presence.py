from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hn.errors import MalformedDocument, VerificationError
from hn.proto import timefmt
from hn.proto.identity import verify_identity
from hn.proto.keys import IdentityKeys
from hn.proto.presence import check_presence, verify_presence
from hn.proto.signed import sign_document

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
KEYS = IdentityKeys(bytes(range(32)), 0)
HISTORY = verify_identity(json.loads((VECTORS / "identity.json").read_text())["genesis"])
PRESENCE = json.loads((VECTORS / "presence.json").read_text())["presence"]


def resign(**changes: Any) -> dict[str, Any]:
    return sign_document(dict(PRESENCE, **changes), KEYS)


def test_vector_verifies_until_it_expires() -> None:
    verify_presence(PRESENCE, HISTORY)
    verify_presence(PRESENCE, HISTORY, now=timefmt.parse("2026-01-07T23:59:59Z"))
    with pytest.raises(VerificationError, match="expired"):
        verify_presence(PRESENCE, HISTORY, now=timefmt.parse("2026-01-08T00:00:00Z"))


@pytest.mark.parametrize("field", ["seq", "url", "index", "hpke_public_key", "expires_at", "relays"])
def test_any_changed_field_breaks_the_signature(field: str) -> None:
    values = {"seq": 2, "url": "http://127.0.0.1:1", "index": dict(PRESENCE["index"], size=1),
              "hpke_public_key": "A" * 43 + "=", "expires_at": "2027-01-01T00:00:00Z",
              "relays": [{"type": "relay@1", "did": KEYS.did, "url": "http://127.0.0.1:2",
                          "expires_at": "2026-02-01T00:00:00Z"}]}
    with pytest.raises(VerificationError, match="signature"):
        verify_presence(dict(PRESENCE, **{field: values[field]}), HISTORY)


@pytest.mark.parametrize(("changes", "message"), [
    ({"seq": 0}, "seq must be at least 1"),
    ({"seq": True}, "must be an integer"),
    ({"url": "ftp://example.org"}, "only http and https"),
    ({"index": {"root": "xyz", "size": 0, "cursor": 0}}, "not a hex digest"),
    ({"index": {"root": "0" * 64, "size": -1, "cursor": 0}}, "negative"),
    ({"hpke_public_key": "AAAA"}, "expected 32 bytes"),
    ({"issued_at": "2026-01-01 00:00:00"}, "YYYY-MM-DD"),
    ({"relays": [{"type": "relay@1", "did": KEYS.did, "url": "http://r", "expires_at": "2026-02-01T00:00:00Z"}] * 9},
     "more than 8 relays"),
    ({"relays": [{"type": "other@1", "did": KEYS.did, "url": "http://r", "expires_at": "2026-02-01T00:00:00Z"}]},
     "not relay@1"),
])
def test_malformed_presence_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedDocument, match=message):
        check_presence(resign(**changes))


def test_did_must_be_the_signer() -> None:
    other = IdentityKeys(bytes(32), 0)
    with pytest.raises(VerificationError, match="differs from its signer"):
        check_presence(resign(did=other.did))
    with pytest.raises(VerificationError, match="signed by"):
        verify_presence(sign_document(dict(PRESENCE, did=other.did), other), HISTORY)
