"""Chunked HPKE encryption for large payloads (shards and backups).

An HPKE base-mode context (RFC 9180) to the recipient exports a 32-byte key; the
payload is cut into fixed-size chunks sealed with ChaCha20-Poly1305 under that key.
Chunk ``i`` uses the nonce ``00 00 00 || final || u64be(i)`` and the associated data is
the digest of the signed header, so truncation, reordering, duplication, trailing data
and a header swap all fail authentication. On disk each chunk is ``u32be(len) || ct``.
Every non-final chunk holds exactly ``chunk_size`` bytes of plaintext; only the final
chunk may be short or empty.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hn.errors import TooLarge, VerificationError
from hn.proto.keys import hpke_suite

EXPORT_LABEL = b"hn chunk key v1"
TAG = 16
DEFAULT_CHUNK = 1 << 20
MIN_CHUNK = 1 << 10
MAX_CHUNK = 1 << 24


class ChunkError(VerificationError):
    """The encrypted payload is damaged."""

    code = "chunk"


def _nonce(index: int, final: bool) -> bytes:
    return b"\x00\x00\x00" + (b"\x01" if final else b"\x00") + index.to_bytes(8, "big")


def sender(recipient_public: bytes, info: bytes) -> tuple[bytes, ChaCha20Poly1305]:
    """Set up HPKE to a recipient's X25519 key; returns (enc, chunk cipher)."""
    suite = hpke_suite()
    pk = suite.kem.deserialize_public_key(recipient_public)
    enc, ctx = suite.create_sender_context(pk, info=info)
    return bytes(enc), ChaCha20Poly1305(bytes(ctx.export(EXPORT_LABEL, 32)))


def recipient(enc: bytes, private_key: bytes, info: bytes) -> ChaCha20Poly1305:
    suite = hpke_suite()
    sk = suite.kem.deserialize_private_key(private_key)
    try:
        ctx = suite.create_recipient_context(enc, sk, info=info)
    except Exception as exc:  # pyhpke raises its own types for bad encapsulations
        raise ChunkError(f"HPKE setup failed: {exc}") from exc
    return ChaCha20Poly1305(bytes(ctx.export(EXPORT_LABEL, 32)))


def read_exact(src: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream."""
    parts = []
    while n:
        block = src.read(n)
        if not block:
            break
        parts.append(block)
        n -= len(block)
    return b"".join(parts)


def encrypt_stream(
    cipher: ChaCha20Poly1305,
    src: BinaryIO,
    dst: BinaryIO,
    aad: bytes,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, str]:
    """Encrypt ``src`` to ``dst``; returns (plaintext bytes, ciphertext bytes, BLAKE3 hex of ciphertext)."""
    hasher = blake3.blake3()
    total_in = total_out = 0
    index = 0
    block = read_exact(src, chunk_size)
    while True:
        nxt = read_exact(src, chunk_size) if len(block) == chunk_size else b""
        final = not nxt
        ct = cipher.encrypt(_nonce(index, final), block, aad)
        frame = struct.pack(">I", len(ct)) + ct
        dst.write(frame)
        hasher.update(frame)
        total_in += len(block)
        total_out += len(frame)
        if progress:
            progress(len(block))
        if final:
            break
        block = nxt
        index += 1
    return total_in, total_out, hasher.hexdigest()


def decrypt_stream(
    cipher: ChaCha20Poly1305,
    src: BinaryIO,
    dst: BinaryIO,
    aad: bytes,
    chunk_size: int,
    max_plaintext: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Decrypt and write plaintext; refuses damaged streams with a precise message."""
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ChunkError(f"chunk size {chunk_size} out of range")
    max_frame = chunk_size + TAG
    seen: dict[bytes, int] = {}
    index = 0
    total = 0
    while True:
        head = read_exact(src, 4)
        if not head:
            raise ChunkError("truncated: the payload ends before its final chunk")
        if len(head) < 4:
            raise ChunkError(f"truncated: chunk {index} has a partial length prefix")
        (length,) = struct.unpack(">I", head)
        if length < TAG or length > max_frame:
            raise ChunkError(f"chunk {index} has an invalid length {length}")
        ct = read_exact(src, length)
        if len(ct) < length:
            raise ChunkError(f"truncated: chunk {index} is cut short")
        fingerprint = blake3.blake3(ct).digest()
        if fingerprint in seen:
            raise ChunkError(f"chunk {index} duplicates chunk {seen[fingerprint]}")
        seen[fingerprint] = index
        final, plain = _open_chunk(cipher, index, ct, aad)
        if not final and len(plain) == 0:
            raise ChunkError(f"empty non-final chunk {index}")
        if not final and len(plain) != chunk_size:
            raise ChunkError(f"non-final chunk {index} has {len(plain)} bytes, expected {chunk_size}")
        total += len(plain)
        if total > max_plaintext:
            raise TooLarge(f"payload exceeds its declared size of {max_plaintext} bytes")
        dst.write(plain)
        if progress:
            progress(len(plain))
        if final:
            if src.read(1):
                raise ChunkError("trailing data after the final chunk")
            return total
        index += 1


def _open_chunk(cipher: ChaCha20Poly1305, index: int, ct: bytes, aad: bytes) -> tuple[bool, bytes]:
    for final in (False, True):
        try:
            return final, cipher.decrypt(_nonce(index, final), ct, aad)
        except InvalidTag:
            continue
    # Tell a moved chunk apart from a corrupted one: it authenticates under another index.
    for other in range(max(0, index - 64), index + 64):
        if other == index:
            continue
        for final in (False, True):
            try:
                cipher.decrypt(_nonce(other, final), ct, aad)
            except InvalidTag:
                continue
            raise ChunkError(f"chunks reordered: chunk {other} found at position {index}")
    raise ChunkError(f"chunk {index} failed authentication (corrupted, or wrong key or header)")
