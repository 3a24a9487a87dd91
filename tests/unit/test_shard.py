from __future__ import annotations

import io
import struct

import blake3
import pytest

from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto import shard
from hn.proto.canonical import canonical
from hn.proto.chunked import ChunkError
from hn.proto.identity import KeyHistory, build_identity, make_key_entry, verify_identity
from hn.proto.keys import IdentityKeys
from hn.proto.signed import sign_document

SENDER = IdentityKeys(bytes(range(32)), 0)
RECIPIENT = IdentityKeys(bytes(range(1, 33)), 0)
T0 = "2020-01-01T00:00:00Z"


def history(keys: IdentityKeys) -> KeyHistory:
    entries = [make_key_entry(IdentityKeys(keys.secret, 0), 0, T0, None)]
    for seq in range(1, keys.key_seq + 1):
        entries.append(make_key_entry(IdentityKeys(keys.secret, seq), seq, f"202{seq}-01-01T00:00:00Z", entries[-1]))
    return verify_identity(build_identity(keys, "x", entries, "2026-01-01T00:00:00Z"))


def seal(body: bytes, to: IdentityKeys = RECIPIENT, seq: int = 0, meta: dict | None = None) -> bytes:
    meta = meta or {"name": "f", "media_type": "text/plain", "size": len(body), "digest": blake3.blake3(body).hexdigest()}
    out = io.BytesIO()
    shard.seal(SENDER, to.did, seq, to.hpke_public(seq), meta, io.BytesIO(body), out, "2026-01-01T00:00:00Z",
               chunk_size=1024)
    return out.getvalue()


def open_(raw: bytes, keys: IdentityKeys = RECIPIENT, sender: KeyHistory | None = None) -> bytes:
    out = io.BytesIO()
    shard.open_shard(io.BytesIO(raw), sender or history(SENDER), keys, out)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 1000, 1024 * 3 + 7])
def test_round_trip(size: int) -> None:
    body = bytes(i % 256 for i in range(size))
    assert open_(seal(body)) == body


def test_shard_for_someone_else_refused() -> None:
    with pytest.raises(VerificationError, match="addressed to"):
        open_(seal(b"secret"), keys=SENDER)


def test_sender_must_match_history() -> None:
    with pytest.raises(VerificationError, match="signed by"):
        open_(seal(b"secret"), sender=history(RECIPIENT))


def test_truncated_shard_refused() -> None:
    raw = seal(b"z" * 3000)
    with pytest.raises(ChunkError, match="truncated"):
        open_(raw[:-10])
    with pytest.raises(MalformedDocument, match="truncated shard header"):
        open_(raw[:20])


def test_tampered_header_refused() -> None:
    raw = seal(b"data")
    (length,) = struct.unpack(">I", raw[8:12])
    header = raw[12:12 + length]
    changed = header.replace(b'"chunk_size":1024', b'"chunk_size":2048')
    assert changed != header
    with pytest.raises(VerificationError, match="signature"):
        open_(raw[:12] + changed + raw[12 + length:])


def test_header_resigned_by_sender_for_other_payload_fails_authentication() -> None:
    """A re-signed header (e.g. new issued_at) no longer matches the chunks' associated data."""
    raw = seal(b"data")
    (length,) = struct.unpack(">I", raw[8:12])
    header, _ = shard.read_header(io.BytesIO(raw))
    other = canonical(sign_document(dict(header, issued_at="2026-01-02T00:00:00Z"), SENDER))
    forged = raw[:8] + struct.pack(">I", len(other)) + other + raw[12 + length:]
    with pytest.raises(ChunkError, match="failed authentication"):
        open_(forged)


def test_wrong_content_digest_refused() -> None:
    body = b"payload"
    raw = seal(body, meta={"size": len(body), "digest": "0" * 64})
    with pytest.raises(VerificationError, match="does not match its recorded digest"):
        open_(raw)


def test_bad_magic_and_oversize_header() -> None:
    with pytest.raises(MalformedDocument, match="bad magic"):
        open_(b"NOTSHARD" + b"\x00" * 20)
    with pytest.raises(TooLarge):
        open_(shard.MAGIC + struct.pack(">I", shard.MAX_HEADER + 1))


def test_old_hpke_key_still_opens_after_rotation() -> None:
    raw = seal(b"before rotation", seq=0)
    rotated = IdentityKeys(RECIPIENT.secret, 1)
    assert open_(raw, keys=rotated) == b"before rotation"
    future = seal(b"x", to=IdentityKeys(RECIPIENT.secret, 2), seq=2)
    with pytest.raises(VerificationError, match="does not have"):
        open_(future, keys=rotated)
