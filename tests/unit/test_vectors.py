"""The committed vectors in spec/vectors/ and published vectors from their own sources."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hn.errors import MalformedDocument, VerificationError
from hn.proto import chunked, shard
from hn.proto.canonical import canonical, hexdigest, loads_canonical, loads_strict
from hn.proto.identity import verify_identity
from hn.proto.keys import IdentityKeys, hpke_suite

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text("utf-8"))  # type: ignore[no-any-return]


def fixed_sender(ikm: bytes) -> Any:
    """chunked.sender with the vector's fixed HPKE ephemeral key."""

    def sender(recipient_public: bytes, info: bytes) -> tuple[bytes, ChaCha20Poly1305]:
        suite = hpke_suite()
        pk = suite.kem.deserialize_public_key(recipient_public)
        enc, ctx = suite.create_sender_context(pk, info=info, eks=suite.kem.derive_key_pair(ikm))
        return bytes(enc), ChaCha20Poly1305(bytes(ctx.export(chunked.EXPORT_LABEL, 32)))

    return sender


def test_jcs_vectors() -> None:
    cases = load("jcs.json")["cases"]
    assert len(cases) >= 5
    for case in cases:
        out = canonical(loads_strict(case["input"]))
        assert out.decode("utf-8") == case["canonical"], case["input"]
        assert loads_canonical(out) == loads_strict(case["input"])


# RFC 8785 section 3.2.2 (the "numbers/string/literals" example) and section 3.2.3
# (property sorting by UTF-16 code units), expected outputs as printed in the RFC.
RFC8785_EXAMPLES = [
    (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}',
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    ),
    (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}',
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
        '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ),
]

# Number serialisation RFC 8785 section 3.2.2.3 requires (ECMAScript Number::toString).
NUMBERS = [
    ("1.0", "1"), ("-0", "0"), ("-0.0", "0"), ("1e21", "1e+21"), ("1e20", "100000000000000000000"),
    ("0.000001", "0.000001"), ("1e-7", "1e-7"), ("5e-324", "5e-324"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"), ("9007199254740991", "9007199254740991"),
    ("-1.5", "-1.5"), ("1.2345678901234568e20", "123456789012345680000"),
]


@pytest.mark.parametrize(("text", "expected"), RFC8785_EXAMPLES)
def test_rfc8785_published_examples(text: str, expected: str) -> None:
    assert canonical(loads_strict(text)).decode("utf-8") == expected


@pytest.mark.parametrize(("text", "expected"), NUMBERS)
def test_number_serialisation(text: str, expected: str) -> None:
    assert canonical([loads_strict(text)]).decode() == f"[{expected}]"
    if text != expected:
        with pytest.raises(Exception, match="canonical"):
            loads_canonical(f"[{text}]".encode())


def test_integers_beyond_the_safe_range_are_refused() -> None:
    # An integer JSON cannot carry exactly (|n| > 2**53 - 1) is refused, not rounded.
    with pytest.raises(MalformedDocument, match="safe integer"):
        canonical([loads_strict("123456789012345680000")])


def test_blake3_official_empty_input_vector() -> None:
    # BLAKE3 reference test_vectors.json (github.com/BLAKE3-team/BLAKE3), input_len 0, first 32 bytes.
    assert hexdigest(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_chunked_vector_is_reproduced_byte_for_byte() -> None:
    v = load("chunked.json")
    keys = IdentityKeys(bytes.fromhex(v["recipient_secret_hex"]), 0)
    assert keys.hpke_public(0).hex() == v["recipient_hpke_public_hex"]
    plain = bytes(i % 251 for i in range(v["plaintext_len"]))
    enc, cipher = fixed_sender(bytes.fromhex(v["ephemeral_ikm_hex"]))(keys.hpke_public(0), v["info"].encode())
    assert enc.hex() == v["enc_hex"]
    out = io.BytesIO()
    chunked.encrypt_stream(cipher, io.BytesIO(plain), out, v["aad"].encode(), v["chunk_size"])
    assert out.getvalue().hex() == v["ciphertext_hex"]
    private = bytes(keys.hpke_keypair(0).private_key.to_private_bytes())
    back = io.BytesIO()
    chunked.decrypt_stream(chunked.recipient(enc, private, v["info"].encode()),
                           io.BytesIO(bytes.fromhex(v["ciphertext_hex"])), back, v["aad"].encode(),
                           v["chunk_size"], len(plain))
    assert back.getvalue() == plain


def test_shard_vector_opens_and_reseals_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    v = load("shard.json")
    sender_keys = IdentityKeys(bytes.fromhex(v["sender_secret_hex"]), 0)
    recipient_keys = IdentityKeys(bytes.fromhex(v["recipient_secret_hex"]), 0)
    raw = bytes.fromhex(v["shard_hex"])
    assert blake3.blake3(raw).hexdigest() == v["shard_id"]
    sender_history = verify_identity(load("identity.json")["genesis"])
    assert verify_identity(v["recipient_identity"]).did == recipient_keys.did
    # the committed file opens for its recipient
    out = io.BytesIO()
    meta = shard.open_shard(io.BytesIO(raw), sender_history, recipient_keys, out)
    assert meta == v["meta"] and out.getvalue() == bytes.fromhex(v["plaintext_hex"])
    header, header_raw = shard.read_header(io.BytesIO(raw))
    assert header == v["header"] and header_raw == canonical(v["header"])
    # and sealing again with the same ephemeral key gives the same bytes
    monkeypatch.setattr(chunked, "sender", fixed_sender(bytes.fromhex(v["ephemeral_ikm_hex"])))
    again = io.BytesIO()
    shard.seal(sender_keys, recipient_keys.did, 0, recipient_keys.hpke_public(0), v["meta"],
               io.BytesIO(bytes.fromhex(v["plaintext_hex"])), again, v["issued_at"], chunk_size=v["chunk_size"])
    assert again.getvalue() == raw
    # the sender's key opens nothing
    with pytest.raises(VerificationError, match="addressed to"):
        shard.open_shard(io.BytesIO(raw), sender_history, sender_keys, io.BytesIO())


def test_generator_reproduces_every_committed_vector() -> None:
    """tooling/gen_vectors.py is deterministic: regenerating changes no committed byte."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "tooling" / "gen_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_vectors", path)
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, build in (("merkle.json", gen.merkle_vectors), ("jcs.json", gen.jcs_vectors),
                        ("identity.json", gen.identity_vectors), ("did.json", gen.did_vectors),
                        ("presence.json", gen.presence_vectors), ("chunked.json", gen.chunked_vectors),
                        ("shard.json", gen.shard_vectors)):
        assert json.loads(json.dumps(build())) == load(name), name
