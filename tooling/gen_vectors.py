"""Regenerate spec/vectors/*.json from fixed inputs. Tests check the code reproduces them.

Run: python tooling/gen_vectors.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hn.proto import merkle, timefmt  # noqa: E402
from hn.proto.canonical import canonical, doc_digest  # noqa: E402
from hn.proto.identity import build_identity, make_key_entry  # noqa: E402
from hn.proto.keys import IdentityKeys, did_from_public_key  # noqa: E402
from hn.proto.presence import PRESENCE_TYPE  # noqa: E402
from hn.proto.signed import sign_document  # noqa: E402

OUT = ROOT / "spec" / "vectors"
SECRET = bytes(range(32))
GENESIS = "2020-01-01T00:00:00Z"


def write(name: str, data: Any) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def merkle_vectors() -> dict[str, Any]:
    cases = []
    for n in (0, 1, 2, 3, 7, 8):
        leaves = [bytes([i]) * 32 for i in range(n)]
        root = merkle.root(leaves)
        proofs = [{"index": i, "path": [p.hex() for p in merkle.inclusion_proof(leaves, i)]} for i in range(n)]
        cases.append({"n": n, "leaves": [x.hex() for x in leaves], "root": root.hex(), "proofs": proofs})
    return {"description": "RFC 6962 trees with BLAKE3; leaf i is 32 bytes of value i", "cases": cases}


def jcs_vectors() -> dict[str, Any]:
    inputs = [
        '{"b":2,"a":1}',
        '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001]}',
        '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","1":"One","\\u0080":"Control","\\ud83d\\ude00":"Smiley","\\u00f6":"Latin"}',
        '{"literals":[null,true,false],"string":"\\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
        '[1.0,-0,100]',
    ]
    cases = [{"input": text, "canonical": canonical(json.loads(text)).decode("utf-8")} for text in inputs]
    return {"description": "JCS (RFC 8785) cases; the sort and number examples follow RFC 8785 section 3.2",
            "cases": cases}


def identity_vectors() -> dict[str, Any]:
    keys0 = IdentityKeys(SECRET, 0)
    entries = [make_key_entry(keys0, 0, GENESIS, None)]
    doc0 = build_identity(keys0, "vector", entries, "2026-01-01T00:00:00Z")
    keys1 = IdentityKeys(SECRET, 1)
    entries1 = entries + [make_key_entry(keys1, 1, "2026-02-01T00:00:00Z", entries[0])]
    doc1 = build_identity(keys1, "vector", entries1, "2026-02-01T00:00:00Z")
    return {
        "description": "identity@1 from the secret 000102…1f: genesis only, then after one rotation",
        "secret_hex": SECRET.hex(),
        "genesis": doc0,
        "rotated": doc1,
    }


def did_vectors() -> dict[str, Any]:
    keys = IdentityKeys(SECRET, 0)
    pk = keys.signing_public(0)
    return {"description": "DID from the Ed25519 key derived from secret 000102…1f at seq 0",
            "public_key_hex": pk.hex(), "did": did_from_public_key(pk)}


def presence_vectors() -> dict[str, Any]:
    keys = IdentityKeys(SECRET, 0)
    ident = identity_vectors()["genesis"]
    body = {
        "type": PRESENCE_TYPE, "did": keys.did, "seq": 1, "issued_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-08T00:00:00Z", "url": "http://127.0.0.1:7733",
        "index": {"root": merkle.root([]).hex(), "size": 0, "cursor": 0},
        "hpke_public_key": ident["hpke_public_key"], "identity_digest": doc_digest(ident), "relays": [],
    }
    doc = sign_document(body, keys)
    return {"description": "a signed presence@2 by the identity of identity.json (genesis)",
            "presence": doc, "canonical": canonical(doc).decode(), "digest": doc_digest(doc)}


EPHEMERAL_IKM = bytes(range(32, 64))


def fixed_sender(recipient_public: bytes, info: bytes, ikm: bytes = EPHEMERAL_IKM) -> tuple[bytes, Any]:
    """chunked.sender with a fixed HPKE ephemeral key, so sealing is byte-exact."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from hn.proto import chunked
    from hn.proto.keys import hpke_suite

    suite = hpke_suite()
    pk = suite.kem.deserialize_public_key(recipient_public)
    eks = suite.kem.derive_key_pair(ikm)
    enc, ctx = suite.create_sender_context(pk, info=info, eks=eks)
    return bytes(enc), ChaCha20Poly1305(bytes(ctx.export(chunked.EXPORT_LABEL, 32)))


def chunked_vectors() -> dict[str, Any]:
    import io

    from hn.proto import chunked

    recipient = IdentityKeys(SECRET, 0)
    plain = bytes(i % 251 for i in range(2500))  # two full 1,024-byte chunks and a short final one
    enc, cipher = fixed_sender(recipient.hpke_public(0), b"hn vector")
    out = io.BytesIO()
    chunked.encrypt_stream(cipher, io.BytesIO(plain), out, b"vector aad", chunk_size=1024)
    return {
        "description": "chunked HPKE stream to the HPKE key 0 of secret 000102…1f; ephemeral key "
                       "DeriveKeyPair(202122…3f); plaintext byte i = i mod 251",
        "recipient_secret_hex": SECRET.hex(), "recipient_hpke_public_hex": recipient.hpke_public(0).hex(),
        "ephemeral_ikm_hex": EPHEMERAL_IKM.hex(), "info": "hn vector", "aad": "vector aad",
        "chunk_size": 1024, "plaintext_len": len(plain), "enc_hex": enc.hex(),
        "ciphertext_hex": out.getvalue().hex(),
    }


def shard_vectors() -> dict[str, Any]:
    """A shard from the vector identity to a second fixed identity (sealing with a fixed ephemeral key)."""
    import io

    from hn.proto import chunked, shard

    sender = IdentityKeys(SECRET, 0)
    recipient_secret = bytes(range(100, 132))
    recipient = IdentityKeys(recipient_secret, 0)
    body = b"hello from the shard vector\n" * 50
    import blake3

    meta = {"name": "vector.txt", "media_type": "text/plain", "size": len(body),
            "digest": blake3.blake3(body).hexdigest()}
    original = chunked.sender
    chunked.sender = fixed_sender  # type: ignore[assignment]
    try:
        out = io.BytesIO()
        header = shard.seal(sender, recipient.did, 0, recipient.hpke_public(0), meta, io.BytesIO(body), out,
                            "2026-01-01T00:00:00Z", chunk_size=1024)
    finally:
        chunked.sender = original  # type: ignore[assignment]
    raw = out.getvalue()
    recipient_identity = build_identity(recipient, "recipient",
                                        [make_key_entry(recipient, 0, GENESIS, None)], "2026-01-01T00:00:00Z")
    return {
        "description": "shard@1 from the identity of identity.json (genesis) to the identity of secret "
                       "646566…83 (key 0); ephemeral key DeriveKeyPair(202122…3f)",
        "sender_secret_hex": SECRET.hex(), "recipient_secret_hex": recipient_secret.hex(),
        "recipient_identity": recipient_identity, "ephemeral_ikm_hex": EPHEMERAL_IKM.hex(),
        "issued_at": "2026-01-01T00:00:00Z", "chunk_size": 1024,
        "meta": meta, "plaintext_hex": body.hex(), "header": header,
        "shard_hex": raw.hex(), "shard_id": blake3.blake3(raw).hexdigest(),
    }


def chunked_fixtures() -> None:
    """Golden damaged payloads (THREATS 8): one good stream and one file per kind of damage."""
    import io
    import struct

    from hn.proto import chunked

    folder = ROOT / "tests" / "fixtures" / "chunked"
    folder.mkdir(parents=True, exist_ok=True)
    recipient = IdentityKeys(SECRET, 0)
    public = recipient.hpke_public(0)
    aad = b"fixture header digest"
    enc, cipher = fixed_sender(public, b"hn fixture", bytes(range(64, 96)))
    plain = bytes(range(256)) * 12  # 3,072 bytes: three chunks of 1,024, the third marked final
    out = io.BytesIO()
    chunked.encrypt_stream(cipher, io.BytesIO(plain), out, aad, chunk_size=1024)
    good = out.getvalue()
    frames = []
    pos = 0
    while pos < len(good):
        (length,) = struct.unpack(">I", good[pos:pos + 4])
        frames.append(good[pos:pos + 4 + length])
        pos += 4 + length
    empty_enc, empty_cipher = fixed_sender(public, b"hn fixture", bytes(range(96, 128)))
    forged = empty_cipher.encrypt(chunked._nonce(0, False), b"", aad)
    cases = {
        "good": good,
        "truncated": b"".join(frames[:-1]),
        "reordered": b"".join([frames[1], frames[0], *frames[2:]]),
        "duplicated": b"".join([frames[0], frames[0], *frames[1:]]),
        "extended": good + b"\x00\x00\x00\x10" + b"x" * 16,
        "cut_frame": good[:-5],
        "empty_nonfinal": struct.pack(">I", len(forged)) + forged + good,
    }
    for name, data in cases.items():
        (folder / f"{name}.bin").write_bytes(data)
    meta = {"enc_hex": enc.hex(), "empty_enc_hex": empty_enc.hex(), "aad": aad.decode(), "info": "hn fixture",
            "chunk_size": 1024, "plaintext_hex_len": len(plain), "secret_hex": SECRET.hex()}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def main() -> None:
    timefmt.now = lambda: 1767225600.0  # 2026-01-01T00:00:00Z, for any default timestamps
    write("merkle.json", merkle_vectors())
    write("jcs.json", jcs_vectors())
    write("identity.json", identity_vectors())
    write("did.json", did_vectors())
    write("presence.json", presence_vectors())
    write("chunked.json", chunked_vectors())
    write("shard.json", shard_vectors())
    if "--fixtures" in sys.argv:
        chunked_fixtures()


if __name__ == "__main__":
    main()
