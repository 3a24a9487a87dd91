"""Open a backup payload: recipient keys, then decrypt -> decompress -> archive, all bounded.

Decryption runs in a worker thread that hands plaintext chunks over a bounded queue; the
main thread reads them through a zstd decompressor whose window is capped and whose output is
counted against the header's ``archive_size``. Every limit comes from the signed header,
so a hostile payload stops at the first byte past what its owner declared.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import blake3
import zstandard

from hn.backup.tarball import Buffered
from hn.errors import NotFound, TooLarge, VerificationError
from hn.proto import backup as proto
from hn.proto import chunked
from hn.proto.canonical import b64d
from hn.proto.keys import IdentityKeys, hpke_key_id
from hn.vault import identities
from hn.vault.home import Home

MAX_WINDOW = 1 << 24


class WrongRecipient(VerificationError):
    """This vault does not hold the key the backup is sealed to."""

    code = "wrong_recipient"


def recipient_key(home: Home, header: dict[str, Any]) -> bytes:
    """The X25519 private key the header names, derived from an own identity's secret."""
    did, seq, key_id = header["recipient"], header["recipient_key_seq"], header["recipient_key_id"]
    need = f"key {seq} (key id {key_id}) of {did}"
    for alias in identities.own_aliases(home):
        ident = identities.load(home, alias)
        if ident.did != did:
            continue
        keys = IdentityKeys(ident.keys.secret, seq)
        pair = keys.hpke_keypair(seq)
        if hpke_key_id(bytes(pair.public_key.to_public_bytes())) != key_id:
            raise WrongRecipient(f"the backup is sealed to {need}, which the secret of {did} does not derive")
        return bytes(pair.private_key.to_private_bytes())
    have = ", ".join(identities.load(home, a).did for a in identities.own_aliases(home)) or "no identity"
    raise WrongRecipient(f"wrong recipient: the backup is sealed to {need}; this vault holds {have}")


class _Tee:
    """Hash the encrypted payload while it is read, to compare with the signed digest."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.hasher = blake3.blake3()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data


class Bounded:
    """Archive bytes out of the decompressor, refused past the declared size."""

    def __init__(self, src: Any, limit: int) -> None:
        self.src = src
        self.limit = limit
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge(f"the payload decompresses past its declared size of {self.limit} bytes (zstd bomb?)")
        return bytes(data)


class _Stopped(Exception):
    """The reader went away; the decrypting thread stops quietly."""


class _Handoff:
    """Decrypted chunks passed from the decrypting thread to the reader, without copies.

    The thread ``write``s whole chunks into a bounded queue; ``read(n)`` hands a chunk
    back as is when ``n`` covers it (the archive reader asks for a chunk's size), else a
    slice. Memory stays at ``depth`` chunks. A pipe did the same job with two more copies
    of every byte through the kernel.
    """

    def __init__(self, depth: int = 8) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.current = b""
        self.offset = 0
        self.eof = False

    # decrypting thread
    def write(self, data: bytes) -> int:
        self._put(bytes(data))
        return len(data)

    def end(self) -> None:
        with contextlib.suppress(_Stopped):
            self._put(None)

    def _put(self, item: bytes | None) -> None:
        while True:
            if self.stopped.is_set():
                raise _Stopped()
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # reading thread
    def read(self, n: int = -1) -> bytes:
        while self.offset >= len(self.current):
            if self.eof:
                return b""
            item = self.queue.get()
            if item is None:
                self.eof = True
                return b""
            self.current, self.offset = item, 0
        start = self.offset
        if start == 0 and (n < 0 or n >= len(self.current)):
            self.offset = len(self.current)
            return self.current
        end = len(self.current) if n < 0 else min(len(self.current), start + n)
        self.offset = end
        return self.current[start:end]

    def stop(self) -> None:
        self.stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()


@contextlib.contextmanager
def open_compressed(header: dict[str, Any], private_key: bytes, src: BinaryIO) -> Iterator[Any]:
    """Yield a read()-able stream of the decrypted .tar.zst bytes; verifies everything on exit."""
    cipher = chunked.recipient(b64d(header["enc"], length=32), private_key, proto.INFO)
    aad = proto.payload_aad(header)
    tee = _Tee(src)
    payload = header["payload"]
    handoff = _Handoff()
    errors: list[BaseException] = []
    written: list[int] = []

    def work() -> None:
        try:
            written.append(chunked.decrypt_stream(cipher, cast(BinaryIO, tee), cast(BinaryIO, handoff), aad,
                                                  header["algorithm"]["chunk_size"], payload["compressed_size"]))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reading thread
            errors.append(exc)
        finally:
            handoff.end()

    worker = threading.Thread(target=work, name="hn-backup-decrypt", daemon=True)
    worker.start()
    try:
        try:
            yield handoff
            # Nothing may follow what the reader consumed.
            if handoff.read(1):
                raise VerificationError("the payload has data after its compressed archive")
        except BaseException:
            handoff.stop()
            worker.join()
            if errors:
                raise errors[0] from None
            raise
        worker.join()
        if errors:
            raise errors[0]
        if written and written[0] != payload["compressed_size"]:
            raise VerificationError(
                f"the payload holds {written[0]} compressed bytes, the header says {payload['compressed_size']}")
        if tee.size != payload["size"] or tee.hasher.hexdigest() != payload["digest"]:
            raise VerificationError("the payload digest does not match the signed header")
    finally:
        handoff.stop()
        worker.join()


@contextlib.contextmanager
def open_archive(header: dict[str, Any], private_key: bytes, src: BinaryIO) -> Iterator[Buffered]:
    """Yield the decrypted, decompressed archive stream, bounded by ``archive_size``.

    Reads of it return exactly the size asked for (fewer only at the end)."""
    with open_compressed(header, private_key, src) as compressed:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        try:
            reader = dctx.stream_reader(compressed, read_size=chunked.DEFAULT_CHUNK, read_across_frames=False, closefd=False)
        except zstandard.ZstdError as exc:
            raise VerificationError(f"the payload is not valid zstd: {exc}") from exc
        archive = Buffered(Bounded(reader, header["payload"]["archive_size"]))
        try:
            yield archive
            while True:
                rest = archive.read(1 << 16)
                if not rest:
                    break
                if rest.count(0) != len(rest):
                    raise VerificationError("the archive has data after its end marker")
        except zstandard.ZstdError as exc:
            raise VerificationError(f"the payload is not valid zstd: {exc}") from exc


def verify_payload_digest(header: dict[str, Any], src: BinaryIO, *, digest: bool = True) -> None:
    """Check the encrypted payload's size and BLAKE3 against the signed header, without
    decrypting it (the fast check of `verify`).

    ``digest=False`` checks the size only: for a caller that decrypts the payload next,
    which hashes it on the way (``open_compressed``), so it is not read twice.
    """
    expected = header["payload"]["size"]
    size = os.fstat(src.fileno()).st_size
    if size > expected:
        raise VerificationError("the payload is larger than the signed header says")
    if size != expected:
        raise VerificationError(f"the payload has {size} bytes, the signed header says {expected}")
    if not digest:
        return
    hasher = blake3.blake3()
    while block := src.read(1 << 20):
        hasher.update(block)
    if hasher.hexdigest() != header["payload"]["digest"]:
        raise VerificationError("the payload digest does not match the signed header")


def require_payload(path: Any) -> None:
    if not os.path.exists(path):
        raise NotFound(f"payload file {path} not found (it sits beside the header as <id>.backup.payload)")
