"""Golden damaged payloads (tests/fixtures/chunked, made by tooling/gen_vectors.py --fixtures)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hn.errors import TooLarge
from hn.proto import chunked
from hn.proto.keys import IdentityKeys

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "chunked"
META = json.loads((FIX / "meta.json").read_text())
KEYS = IdentityKeys(bytes.fromhex(META["secret_hex"]), 0)
PRIVATE = bytes(KEYS.hpke_keypair(0).private_key.to_private_bytes())


def open_fixture(name: str, enc_field: str = "enc_hex", max_plaintext: int = 1 << 20, aad: bytes | None = None) -> bytes:
    cipher = chunked.recipient(bytes.fromhex(META[enc_field]), PRIVATE, META["info"].encode())
    out = io.BytesIO()
    chunked.decrypt_stream(cipher, io.BytesIO((FIX / f"{name}.bin").read_bytes()), out,
                           aad if aad is not None else META["aad"].encode(), META["chunk_size"], max_plaintext)
    return out.getvalue()


def test_good_stream_decrypts() -> None:
    assert open_fixture("good") == bytes(range(256)) * 12


@pytest.mark.parametrize(("name", "message"), [
    ("truncated", "truncated: the payload ends before its final chunk"),
    ("reordered", "chunks reordered: chunk 1 found at position 0"),
    ("duplicated", "chunk 1 duplicates chunk 0"),
    ("extended", "trailing data after the final chunk"),
    ("cut_frame", "truncated: chunk 2 is cut short"),
])
def test_damaged_streams_refused_with_exact_error(name: str, message: str) -> None:
    with pytest.raises(chunked.ChunkError) as info:
        open_fixture(name)
    assert info.value.message == message


def test_empty_non_final_chunk_refused() -> None:
    with pytest.raises(chunked.ChunkError, match="empty non-final chunk 0"):
        open_fixture("empty_nonfinal", enc_field="empty_enc_hex")


def test_header_swap_refused() -> None:
    with pytest.raises(chunked.ChunkError, match="chunk 0 failed authentication"):
        open_fixture("good", aad=b"another header")


def test_declared_size_bounds_output() -> None:
    with pytest.raises(TooLarge):
        open_fixture("good", max_plaintext=2000)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096])
def test_round_trip_sizes(size: int) -> None:
    enc, cipher = chunked.sender(KEYS.hpke_public(0), b"t")
    data = bytes(size % 251 for size in range(size))
    ct = io.BytesIO()
    chunked.encrypt_stream(cipher, io.BytesIO(data), ct, b"a", chunk_size=1024)
    out = io.BytesIO()
    chunked.decrypt_stream(chunked.recipient(enc, PRIVATE, b"t"), io.BytesIO(ct.getvalue()), out, b"a", 1024, size)
    assert out.getvalue() == data
