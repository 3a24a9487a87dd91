"""shard@1: a document sealed with HPKE to one recipient (spec/shard@1.md).

File layout: ``HNSHARD1`` || u32be(header length) || header (canonical JSON, signed
shard@1 document) || chunk frames (hn.proto.chunked). The plaintext is
u32be(meta length) || meta (canonical JSON: name, media_type, size, digest) || bytes.
The shard id is the BLAKE3 hex of the whole file.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, cast

from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto import chunked
from hn.proto.canonical import b64d, b64e, canonical, hexdigest, is_hex_digest, loads_canonical
from hn.proto.identity import KeyHistory
from hn.proto.keys import SUITE_NAME, IdentityKeys, hpke_key_id, is_did
from hn.proto.signed import check_envelope, require, sign_document, verify_document

MAGIC = b"HNSHARD1"
SHARD_TYPE = "shard@1"
INFO = b"hn shard@1"
MAX_HEADER = 16 * 1024
MAX_META = 16 * 1024


def seal(
    keys: IdentityKeys,
    recipient_did: str,
    recipient_key_seq: int,
    recipient_hpke: bytes,
    meta: dict[str, Any],
    src: BinaryIO,
    dst: BinaryIO,
    issued_at: str,
    chunk_size: int = chunked.DEFAULT_CHUNK,
) -> dict[str, Any]:
    """Write a shard of ``src`` for the recipient to ``dst``; returns the signed header."""
    enc, cipher = chunked.sender(recipient_hpke, INFO)
    header = sign_document(
        {
            "type": SHARD_TYPE,
            "issued_at": issued_at,
            "recipient": recipient_did,
            "recipient_key_seq": recipient_key_seq,
            "recipient_key_id": hpke_key_id(recipient_hpke),
            "suite": SUITE_NAME,
            "enc": b64e(enc),
            "chunk_size": chunk_size,
            "plaintext_size": 4 + len(canonical(meta)) + int(meta["size"]),
        },
        keys,
    )
    raw = canonical(header)
    dst.write(MAGIC + struct.pack(">I", len(raw)) + raw)
    meta_raw = canonical(meta)
    prefix = _Prefixed(struct.pack(">I", len(meta_raw)) + meta_raw, src)
    chunked.encrypt_stream(cipher, cast(BinaryIO, prefix), dst, hexdigest(raw).encode(), chunk_size)
    return header


class _Prefixed:
    """A read-only stream: some bytes, then another stream."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self.head = head
        self.tail = tail

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.tail.read(n)


def read_header(src: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """Read and shape-check a shard header; returns (header, raw canonical bytes)."""
    magic = src.read(len(MAGIC))
    if magic != MAGIC:
        raise MalformedDocument("not a shard file (bad magic)")
    head = src.read(4)
    if len(head) != 4:
        raise MalformedDocument("truncated shard header")
    (length,) = struct.unpack(">I", head)
    if length > MAX_HEADER:
        raise TooLarge("shard header too large")
    raw = src.read(length)
    if len(raw) != length:
        raise MalformedDocument("truncated shard header")
    header = loads_canonical(raw)
    check_envelope(header, SHARD_TYPE)
    if not is_did(require(header, "recipient", str, SHARD_TYPE)):
        raise MalformedDocument("shard@1: recipient is not a DID")
    require(header, "recipient_key_seq", int, SHARD_TYPE)
    require(header, "recipient_key_id", str, SHARD_TYPE)
    require(header, "issued_at", str, SHARD_TYPE)
    if require(header, "suite", str, SHARD_TYPE) != SUITE_NAME:
        raise MalformedDocument(f"shard@1: unsupported suite {header['suite']!r}")
    b64d(require(header, "enc", str, SHARD_TYPE), length=32, what="enc")
    chunk_size = require(header, "chunk_size", int, SHARD_TYPE)
    if not chunked.MIN_CHUNK <= chunk_size <= chunked.MAX_CHUNK:
        raise MalformedDocument("shard@1: chunk_size out of range")
    if require(header, "plaintext_size", int, SHARD_TYPE) < 4:
        raise MalformedDocument("shard@1: plaintext_size out of range")
    return header, raw


def open_shard(
    src: BinaryIO,
    sender: KeyHistory,
    keys: IdentityKeys,
    dst: BinaryIO,
) -> dict[str, Any]:
    """Verify the sender's signature, decrypt for ``keys``, write the document to ``dst``.

    Returns the inner metadata. The caller checks the written bytes' digest against
    ``meta["digest"]`` (this function does so too, on the fly).
    """
    header, raw = read_header(src)
    verify_document(header, sender, SHARD_TYPE)
    if header["recipient"] != keys.did:
        raise VerificationError(
            f"this shard is addressed to {header['recipient']}, not to {keys.did}"
        )
    seq = header["recipient_key_seq"]
    if not 0 <= seq <= keys.key_seq:
        raise VerificationError(f"this shard needs HPKE key {seq}, which this identity does not have")
    pair = keys.hpke_keypair(seq)
    if hpke_key_id(bytes(pair.public_key.to_public_bytes())) != header["recipient_key_id"]:
        raise VerificationError("this shard was sealed to an HPKE key this identity does not hold")
    cipher = chunked.recipient(
        b64d(header["enc"], length=32), bytes(pair.private_key.to_private_bytes()), INFO
    )
    sink = _MetaSplitter(dst)
    chunked.decrypt_stream(
        cipher, src, cast(BinaryIO, sink), hexdigest(raw).encode(), header["chunk_size"], header["plaintext_size"]
    )
    return sink.finish()


class _MetaSplitter:
    """Takes the decrypted plaintext, peels off the metadata, hashes and writes the body."""

    def __init__(self, dst: BinaryIO) -> None:
        import blake3

        self.dst = dst
        self.buf = b""
        self.meta: dict[str, Any] | None = None
        self.hasher = blake3.blake3()
        self.size = 0

    def write(self, data: bytes) -> int:
        if self.meta is None:
            self.buf += data
            if len(self.buf) < 4:
                return len(data)
            (length,) = struct.unpack(">I", self.buf[:4])
            if length > MAX_META:
                raise MalformedDocument("shard metadata too large")
            if len(self.buf) < 4 + length:
                return len(data)
            meta = loads_canonical(self.buf[4 : 4 + length])
            if not isinstance(meta, dict):
                raise MalformedDocument("shard metadata is not an object")
            require(meta, "size", int, "shard metadata")
            if not is_hex_digest(require(meta, "digest", str, "shard metadata")):
                raise MalformedDocument("shard metadata digest is malformed")
            self.meta = meta
            rest, self.buf = self.buf[4 + length :], b""
            data = rest
        else:
            pass
        if data:
            self.hasher.update(data)
            self.size += len(data)
            self.dst.write(data)
        return len(data)

    def finish(self) -> dict[str, Any]:
        if self.meta is None:
            raise MalformedDocument("shard plaintext has no metadata")
        if self.size != self.meta["size"] or self.hasher.hexdigest() != self.meta["digest"]:
            raise VerificationError("shard content does not match its recorded digest")
        return self.meta
