"""Create a backup: scan, archive, compress, encrypt in one streaming pass, then sign.

Files are read once: each file's bytes are hashed as they go into the archive, so the
manifest describes exactly what the payload holds. Memory stays bounded by one read
block and one encryption chunk whatever the vault size. The header is written last and
is the commit point: a crash before it leaves only the payload's temp file, which the
next create into the same folder removes (sweep_incoming).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import blake3
import zstandard

from hn.backup import snapshot, tarball
from hn.backup.snapshot import FileInfo
from hn.errors import HnError, InputError, cannot, os_reason
from hn.proto import backup as proto
from hn.proto import chunked, timefmt
from hn.proto.canonical import b64e
from hn.proto.keys import SUITE_NAME, hpke_key_id
from hn.vault import atomic, leftovers, writer
from hn.vault.home import Home
from hn.vault.identities import Identity

READ_BLOCK = 1 << 20
SMALL_FILE = 1 << 20
BATCH = 1 << 20
ZSTD_LEVEL = 1  # spec/backup@1.md: the level is ours to choose; 1 is the fast one
HEADER_SUFFIX = ".backup.json"
PAYLOAD_SUFFIX = ".backup.payload"
# A payload being written is ".incoming-<hex>.backup.payload" until it takes the backup's
# id; before that, while the bytes go in, it is that name's atomic-write temp file,
# "..incoming-<hex>.backup.payload.<random>.tmp".
# Exactly the names a create gives its payload while it writes it (and their atomic-write
# temp files): a sweep of a folder the user chose touches nothing else in it.
INCOMING_NAME = re.compile(r"\.?\.incoming-[0-9a-f]{16}\.backup\.payload(?:\.[A-Za-z0-9_]+\.tmp)?")
# A payload that has taken its backup's id; the header, written next, commits it. Until
# then the create still holds the payload's lock, so one found unlocked and without its
# header is what a create killed between the two left.
NAMED_PAYLOAD = re.compile(r"[0-9a-f]{32}" + re.escape(PAYLOAD_SUFFIX))
# No link is followed: a file swapped for a symlink after the scan is refused.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Recipient:
    did: str
    key_seq: int
    hpke_public: bytes


@dataclass
class Result:
    header: dict[str, Any]
    header_path: Path
    payload_path: Path
    skipped: list[str] = field(default_factory=list)
    read_files: int = 0
    reclaimed_bytes: int = 0  # payload files of interrupted creates removed from the folder
    warnings: list[str] = field(default_factory=list)  # for the user; the backup is whole all the same

    def summary(self) -> dict[str, Any]:
        h = self.header
        stored = [e for e in h["entries"] if e["stored"]]
        return {
            "id": h["id"], "scope": h["scope"], "base_backup": h["base_backup"], "owner": h["owner"],
            "recipient": h["recipient"], "recipient_key_seq": h["recipient_key_seq"], "target": h["target"],
            "created_at": h["created_at"], "entries": len(h["entries"]), "stored": len(stored),
            "bytes": sum(e["size"] for e in h["entries"]), "stored_bytes": sum(e["size"] for e in stored),
            "merkle_root": h["merkle_root"], "payload_digest": h["payload"]["digest"],
            "payload_size": h["payload"]["size"], "header": str(self.header_path),
            "payload": str(self.payload_path), "files_read": self.read_files, "skipped": self.skipped,
        }


def payload_path_for(header_path: Path) -> Path:
    name = header_path.name
    stem = name[: -len(HEADER_SUFFIX)] if name.endswith(HEADER_SUFFIX) else header_path.stem
    return header_path.with_name(stem + PAYLOAD_SUFFIX)


class _CompressedReader:
    """A pull stream: archive bytes from a generator, zstd-compressed on demand.

    The chunker API, unlike compressobj, hands out multi-threaded output as soon as each
    piece is ready, so memory stays at a few jobs' worth whatever the data size. Its
    pieces are ``piece_size`` bytes (all but the last), and a read of exactly one whole
    piece returns that piece itself: with the encryption chunk as the piece size, the
    compressed bytes are never copied on their way to the cipher.
    """

    def __init__(self, blocks: Iterator[bytes], threads: int, piece_size: int = 1 << 20) -> None:
        self.blocks = blocks
        self.chunker = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads).chunker(chunk_size=piece_size)
        self.pieces: collections.deque[bytes] = collections.deque()
        self.offset = 0  # bytes of pieces[0] already handed out
        self.buffered = 0  # bytes in pieces, less offset
        self.done = False
        self.archive_size = 0
        self.compressed_size = 0

    def _fill(self, n: int) -> None:
        while (n < 0 or self.buffered < n) and not self.done:
            try:
                block = next(self.blocks)
            except StopIteration:
                pieces = self.chunker.finish()
                self.done = True
            else:
                self.archive_size += len(block)
                pieces = self.chunker.compress(block)
            for piece in pieces:
                self.pieces.append(piece)
                self.buffered += len(piece)

    def read(self, n: int = -1) -> bytes:
        self._fill(n)
        want = self.buffered if n < 0 else min(n, self.buffered)
        out: list[bytes] = []
        need = want
        while need:
            first = self.pieces[0]
            start = self.offset
            left = len(first) - start
            if left <= need:
                out.append(first if start == 0 else first[start:])
                self.pieces.popleft()
                self.offset = 0
                need -= left
            else:
                out.append(first[start:start + need])
                self.offset = start + need
                need = 0
        self.buffered -= want
        self.compressed_size += want
        return out[0] if len(out) == 1 else b"".join(out)


class _Archiver:
    """Generates the archive and records each member's digest as it is read.

    Small files are read in one system call and packed, headers and all, into batches of
    about ``BATCH`` bytes: the compressor then sees a few hundred calls instead of two
    per file, which is most of the per-file cost on a vault of notes.
    """

    def __init__(self, files: list[FileInfo], stored: set[str],
                 progress: Callable[[int], None] | None) -> None:
        self.files = files
        self.stored = stored  # the paths to read into the archive
        self.progress = progress
        self.digests: dict[str, str] = {}
        self.read_files = 0

    def blocks(self) -> Iterator[bytes]:
        made: set[str] = set()
        last_parent = ""
        parts: list[bytes] = []
        size = 0  # bytes in parts
        pending = 0  # file bytes in parts not yet reported to progress
        # Locals, not attribute look-ups: this loop runs once per file, and on a vault of
        # notes its own overhead is a good part of the main thread's work.
        header, pads, hasher, block = tarball.member_header, tarball.PADDING, blake3.blake3, tarball.BLOCK
        stored, digests, read_small = self.stored, self.digests, self._read_small
        for info in self.files:
            path = info.path
            if path not in stored:
                continue
            parent = path.rpartition("/")[0]
            # Files come sorted, so a parent seen once has all its ancestors emitted too.
            if parent != last_parent and parent and parent not in made:
                names = path.split("/")
                for i in range(1, len(names)):
                    folder = "/".join(names[:i])
                    if folder not in made:
                        made.add(folder)
                        parts.append(header(folder, 0, snapshot.dir_mode(folder), directory=True))
                        size += block
            last_parent = parent
            length = info.size
            head = header(path, length, info.mode)
            if length <= SMALL_FILE:
                data = read_small(info)
                digests[path] = hasher(data).hexdigest()
                pad = pads[-length % block]
                parts += (head, data, pad)
                size += len(head) + length + len(pad)
                pending += length
                if size >= BATCH:
                    yield b"".join(parts)
                    parts, size = [], 0
                    self._advance(pending)
                    pending = 0
            else:
                parts.append(head)
                yield b"".join(parts)
                parts, size = [], 0
                self._advance(pending)
                pending = 0
                yield from self._large(info)
            self.read_files += 1
        parts.append(tarball.END)
        yield b"".join(parts)
        self._advance(pending)

    def _advance(self, n: int) -> None:
        if self.progress and n:
            self.progress(n)

    def _read_small(self, info: FileInfo) -> bytes:
        size = info.size
        fd = self._open(info)
        try:
            data = os.read(fd, size)
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    raise InputError(f"{info.path} shrank while being backed up; run the backup again")
                data += more
        except OSError as exc:
            raise InputError(f"cannot read {info.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        return data

    def _large(self, info: FileInfo) -> Iterator[bytes]:
        hasher = blake3.blake3()
        remaining = info.size
        fd = self._open(info)
        try:
            while remaining:
                try:
                    block = os.read(fd, min(READ_BLOCK, remaining))
                except OSError as exc:
                    raise InputError(f"cannot read {info.path}: {exc.strerror}") from exc
                if not block:
                    raise InputError(f"{info.path} shrank while being backed up; run the backup again")
                hasher.update(block)
                remaining -= len(block)
                if remaining == 0:
                    block += tarball.padding(info.size)
                yield block
                self._advance(len(block))
        finally:
            os.close(fd)
        self.digests[info.path] = hasher.hexdigest()

    def _open(self, info: FileInfo) -> int:
        try:
            return os.open(info.abspath, READ_FLAGS)
        except OSError as exc:
            raise InputError(f"cannot read {info.path}: {exc.strerror}") from exc


def sweep_incoming(out_dir: Path) -> int:
    """Remove the payload files that interrupted creates (killed, or their machine stopped)
    left in ``out_dir``; returns how many bytes that freed.

    A create holds an exclusive flock on its payload file from the moment the file exists
    until it has taken the backup's name (_open_payload), so a file nobody holds a lock on
    is a leftover. A file is removed only while this holds its lock: a create that finds
    its new file unlinked once the lock is its own knows a sweep took it, and makes another.
    The lock lasts until the header is written, so a named payload whose lock is free and
    whose header is missing (looked for while holding the lock) is a leftover too.
    """
    return sum(size for _, size in leftovers.found(out_dir, _incoming, remove=True, orphaned=_headerless))


def _incoming(name: str) -> bool:
    return INCOMING_NAME.fullmatch(name) is not None or NAMED_PAYLOAD.fullmatch(name) is not None


def _headerless(path: Path) -> bool:
    if NAMED_PAYLOAD.fullmatch(path.name) is None:
        return True  # still an incoming name: never committed
    header = path.with_name(path.name[: -len(PAYLOAD_SUFFIX)] + HEADER_SUFFIX)
    return not os.path.lexists(header)


class _Swept(Exception):
    """A new payload temp file was removed by a sweep before its lock was taken."""


def _open_payload(stack: contextlib.ExitStack, incoming: Path) -> tuple[BinaryIO, int]:
    """The atomic writer of ``incoming`` (entered on ``stack``) and a lock descriptor: a
    duplicate of the temp file's descriptor holding an exclusive flock on it.

    The lock belongs to the open file, not to the name or the handle: it lasts through the
    rename to ``incoming`` and after the writer has closed its handle, until the caller
    closes the lock descriptor once the payload has taken the backup's name.
    """
    while True:
        try:
            with contextlib.ExitStack() as attempt:
                out = attempt.enter_context(atomic.atomic_writer(incoming, mode=0o600))
                lock = os.dup(out.fileno())
                try:
                    swept = not leftovers.claim(lock)
                except BaseException:
                    os.close(lock)
                    raise
                if swept:
                    os.close(lock)
                    raise _Swept  # the writer removes nothing of anyone else's: its name is gone
                stack.enter_context(attempt.pop_all())
                return out, lock
        except _Swept:
            continue


def _sqlite_files(files: list[FileInfo], stack: contextlib.ExitStack) -> list[FileInfo]:
    out = []
    for info in files:
        if info.path.endswith(snapshot.SQLITE_SUFFIX):
            snap = stack.enter_context(snapshot.sqlite_snapshot(info.abspath))
            if snap is not None:
                info = FileInfo(info.path, snap.abspath, snap.size, snap.mtime_ns, snap.ino, snap.ctime_ns, 0o600)
        out.append(info)
    return out


def create(
    home: Home,
    me: Identity,
    out_dir: Path,
    *,
    recipient: Recipient | None = None,
    base: dict[str, Any] | None = None,
    target: str | None = None,
    include_cache: bool = False,
    chunk_size: int = chunked.DEFAULT_CHUNK,
    threads: int = -1,
    progress: Callable[[int], None] | None = None,
    on_scan: Callable[[int], None] | None = None,
    on_written: Callable[[Result], None] | None = None,
) -> Result:
    """Write ``<id>.backup.json`` and ``<id>.backup.payload`` into ``out_dir``.

    ``on_written`` is called once both files are in place (to record the backup), before
    the change-detection cache is updated. The cache is disposable: failing to write it
    is one of the Result's warnings, not an error.
    """
    rcpt = recipient or Recipient(me.did, me.keys.key_seq, me.keys.hpke_public())
    out_dir = Path(os.path.abspath(out_dir))  # the Result's paths are recorded, to be found from anywhere
    # Before any scan: an output folder that cannot be used is known at once.
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if out_dir.exists():
            raise InputError(f"{out_dir} exists and is not a folder") from exc
        raise cannot(f"cannot write the backup into {out_dir}", exc) from exc
    reclaimed = sweep_incoming(out_dir)
    files, skipped = snapshot.scan(home, include_cache)
    # A full backup reads every file anyway: the cache is only rewritten, never consulted.
    cache = snapshot.load_cache(home) if base is not None else {}
    base_digests = {e["path"]: e["digest"] for e in base["entries"]} if base else {}
    incoming = out_dir / f"{leftovers.INCOMING}{os.urandom(8).hex()}{PAYLOAD_SUFFIX}"
    named: Path | None = None  # the payload, once it has the backup's name
    # ``held`` closes the payload's lock descriptor last of all, once the payload is named.
    with contextlib.ExitStack() as held:
        try:
            with contextlib.ExitStack() as stack:
                files = _sqlite_files(files, stack)
                # A file is known, and not read, when its stat key is the cache's and its
                # digest there is the base's.
                known: dict[str, str] = {}
                to_store: set[str] = set()
                lookup, in_base = cache.get, base_digests.get
                for info in files:
                    path = info.path
                    row = lookup(path)
                    if row is not None and row[0] == info.key and in_base(path) == row[1] and \
                            snapshot.cacheable(path):
                        known[path] = row[1]
                    else:
                        to_store.add(path)
                # Every file answered by the cache, and no row for a file that is gone: the
                # cache stays as it is (SQLite databases are never cached).
                cache_current = base is not None and len(known) == len(cache) and \
                    not any(snapshot.cacheable(path) for path in to_store)
                if on_scan:
                    on_scan(sum(f.size for f in files if f.path in to_store))
                created_at = timefmt.now_iso()
                enc, cipher = chunked.sender(rcpt.hpke_public, proto.INFO)
                skeleton: dict[str, Any] = {
                    "type": proto.BACKUP_TYPE, "owner": me.did, "created_at": created_at, "enc": b64e(enc),
                    "recipient": rcpt.did, "recipient_key_id": hpke_key_id(rcpt.hpke_public),
                }
                archiver = _Archiver(files, to_store, progress)
                reader = _CompressedReader(archiver.blocks(), threads, chunk_size)
                with contextlib.ExitStack() as writing:
                    out, lock = _open_payload(writing, incoming)
                    held.callback(os.close, lock)
                    sink = writing.enter_context(writer.sink(out.fileno(), str(incoming)))
                    _, size, payload_digest = chunked.encrypt_stream(
                        cipher, cast(BinaryIO, reader), cast(BinaryIO, sink), proto.payload_aad(skeleton),
                        chunk_size)
                entries = []
                for info in files:
                    stored = info.path in to_store
                    digest = archiver.digests[info.path] if stored else known[info.path]
                    entries.append({"path": info.path, "digest": digest, "size": info.size, "mode": info.mode,
                                    "stored": stored})
            header: dict[str, Any] = {
                **skeleton,
                "scope": "delta" if base is not None else "full",
                "base_backup": base["id"] if base is not None else None,
                "target": target,
                "recipient_key_seq": rcpt.key_seq,
                "algorithm": {"hpke": SUITE_NAME, "compression": proto.COMPRESSION, "archive": proto.ARCHIVE,
                              "chunk_size": chunk_size},
                "payload": {"digest": payload_digest, "size": size, "compressed_size": reader.compressed_size,
                            "archive_size": reader.archive_size},
                "entries": entries,
                "merkle_root": proto.merkle_root(entries),
                "identity": me.doc,
            }
            header, header_bytes = proto.seal(header, me.keys)
            header_path = out_dir / f"{header['id']}{HEADER_SUFFIX}"
            payload_path = payload_path_for(header_path)
            # The payload takes the id's name only now; the header, written last, commits both.
            os.replace(incoming, payload_path)
            named = payload_path
            atomic.write_bytes(header_path, header_bytes)
        except BaseException:
            # No header: the payload alone is no backup.
            with contextlib.suppress(OSError):
                (named or incoming).unlink(missing_ok=True)
            raise
    result = Result(header, header_path, payload_path, skipped, archiver.read_files, reclaimed)
    if on_written:
        on_written(result)
    if not cache_current:
        try:
            _update_cache(home, files, entries)
        except (HnError, OSError) as exc:
            reason = exc.message if isinstance(exc, HnError) else os_reason(exc)
            result.warnings.append(
                f"backup {header['id']} is complete, but the change-detection cache was not updated ({reason}); "
                "the next delta reads the files it has no record of")
    return result


def _update_cache(home: Home, files: list[FileInfo], entries: list[dict[str, Any]]) -> None:
    rows: list[str | int] = []
    for info, entry in zip(files, entries):
        if snapshot.cacheable(info.path):
            rows += (info.path, *info.key, entry["digest"])
    snapshot.save_cache(home, rows)
