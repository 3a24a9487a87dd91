"""dht_hint@1: vectors, the compact key chain, size cap, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hn.errors import HnError, MalformedDocument, TooLarge, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.proto.dht_hint import MAX_BYTES, build_hint, dht_key, newest, parse_hint
from hn.proto.identity import make_key_entry, verify_key_history
from hn.proto.keys import IdentityKeys
from hn.vault import identities
from hn.vault.home import Home

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "spec" / "vectors" / "dht_hint@1.json").read_text())
URL = "https://alice.example.net/.well-known/hn/presence"


def test_vectors_verify_and_rebuild_byte_for_byte() -> None:
    secret = bytes.fromhex(VECTORS["secret_hex"])
    assert IdentityKeys(secret, 0).did == VECTORS["did"]
    entries = [make_key_entry(IdentityKeys(secret, 0), 0, VECTORS["key_created_at"][0], None)]
    entries.append(make_key_entry(IdentityKeys(secret, 1), 1, VECTORS["key_created_at"][1], entries[0]))
    for case in VECTORS["valid"]:
        raw = case["hint"].encode()
        hint = parse_hint(raw, key=bytes.fromhex(case["dht_key_hex"]))
        assert hint.did == VECTORS["did"] and hint.doc["key_seq"] == case["key_seq"]
        assert len(raw) == case["size"] <= MAX_BYTES
        n = case["key_seq"] + 1
        rebuilt = build_hint(IdentityKeys(secret, n - 1), verify_key_history(VECTORS["did"], entries[:n]),
                             seq=hint.seq, presence_digest=VECTORS["presence_digest"],
                             presence_url=VECTORS["presence_url"], issued_at=timefmt.parse(VECTORS["issued_at"]),
                             ttl=VECTORS["ttl"])
        assert rebuilt == raw


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["reason"])
def test_invalid_vectors_refused(case: dict[str, str]) -> None:
    with pytest.raises(HnError):
        parse_hint(case["hint"].encode())


def test_dht_key_is_blake3_of_did_first_20_bytes() -> None:
    import blake3

    did = VECTORS["did"]
    assert dht_key(did) == blake3.blake3(did.encode()).digest()[:20]
    assert len(dht_key(did)) == 20


def _hint(ident: identities.Identity, seq: int = 5, issued: float | None = None, **kw: object) -> bytes:
    return build_hint(ident.keys, ident.history, seq=seq, presence_digest="b" * 64, presence_url=URL,
                      issued_at=issued if issued is not None else timefmt.now(), **kw)  # type: ignore[arg-type]


def test_rotated_identity_hint_verifies_from_did_alone(home: Home, alice: identities.Identity) -> None:
    rotated = identities.rotate(home)
    rotated = identities.rotate(home)
    raw = _hint(rotated)
    hint = parse_hint(raw, now=timefmt.now(), key=dht_key(alice.did))
    assert hint.history.did == alice.did and len(hint.history.keys) == 3
    assert hint.history.current.signing_public_key == rotated.history.current.signing_public_key
    assert len(raw) <= MAX_BYTES


def test_old_key_cannot_sign_for_a_rotated_identity(home: Home, alice: identities.Identity) -> None:
    rotated = identities.rotate(home)
    doc = json.loads(_hint(rotated))
    # Claim key 1 but sign with key 0: the chain names key 1's public key.
    from hn.proto.canonical import b64e
    from hn.proto.signed import signing_bytes

    forged = dict(doc, key_seq=1)
    forged["signature"] = b64e(alice.keys.sign(signing_bytes(forged), 0))
    with pytest.raises(VerificationError):
        parse_hint(canonical(forged))


def test_oversized_hint_refused_at_build(home: Home, alice: identities.Identity) -> None:
    identities.rotate(home)
    rotated = identities.rotate(home)
    with pytest.raises(TooLarge):
        build_hint(rotated.keys, rotated.history, seq=1, presence_digest="b" * 64,
                   presence_url="https://x.example/" + "a" * 200, issued_at=timefmt.now(), relay=alice.did)
    with pytest.raises(TooLarge):
        parse_hint(b"{" + b" " * MAX_BYTES + b"}")


def test_expired_future_and_wrong_key_refused(alice: identities.Identity) -> None:
    now = timefmt.now()
    raw = _hint(alice, issued=now - 3600, ttl=60)
    parse_hint(raw)
    with pytest.raises(VerificationError, match="expired"):
        parse_hint(raw, now=now)
    with pytest.raises(VerificationError, match="future"):
        parse_hint(_hint(alice, issued=now + 4 * 3600), now=now)
    with pytest.raises(VerificationError, match="key"):
        parse_hint(_hint(alice), now=now, key=b"\x00" * 20)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, "text", 7, None])
def test_non_bytes_values_refused(value: object) -> None:
    with pytest.raises(MalformedDocument):
        parse_hint(value)


def test_non_canonical_and_unknown_fields_refused(alice: identities.Identity) -> None:
    raw = _hint(alice)
    with pytest.raises(MalformedDocument):
        parse_hint(raw.replace(b'{"did"', b'{ "did"'))
    doc = json.loads(raw)
    doc["extra"] = 1
    with pytest.raises(MalformedDocument):
        parse_hint(canonical(doc))


def test_newest_is_highest_seq_never_majority(alice: identities.Identity) -> None:
    old = parse_hint(_hint(alice, seq=1))
    new = parse_hint(_hint(alice, seq=2))
    assert newest([old, old, old, new, old]) == new
    assert newest([]) is None
