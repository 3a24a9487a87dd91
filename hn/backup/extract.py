"""Check an archive member by member against its signed manifest, optionally writing files.

Members must appear in manifest order, each with the size the manifest gives, and each
file's BLAKE3 must equal the manifest's digest; folders are accepted only as parents of
manifest entries. Files are written (when a staging folder is given) with O_EXCL under
folders this code created, so nothing in the archive can reach outside the staging tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3

from hn.backup import snapshot, swap, tarball
from hn.backup.tarball import ArchiveError
from hn.errors import DiskError
from hn.vault.writer import BackgroundWriter, ForkedCreator, creator, open_new

READ_BLOCK = 1 << 20


def _disk_error(exc: OSError, path: str) -> DiskError:
    return DiskError(f"could not write {path} into the staging folder: {exc.strerror or exc}; "
                     "the vault was not changed")


def _truncated(path: str) -> ArchiveError:
    return ArchiveError(f"archive is truncated inside {path}")


def parent_dirs(entries: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for entry in entries:
        parts = entry["path"].split("/")
        for i in range(1, len(parts)):
            out.add("/".join(parts[:i]))
    return out


class Extractor:
    """Walks the archive of one backup; writes the files the final state needs."""

    def __init__(self, staging: Path | None, final: dict[str, dict[str, Any]],
                 progress: Callable[[int], None] | None = None) -> None:
        self.staging = staging
        self.final = final  # path -> entry of the newest manifest in the chain
        self.written: set[str] = set()
        self.covered: set[str] = set()
        self.progress = progress
        self.unreported = 0
        self.made_dirs: set[str] = set()
        # Small files are created by a child process and large ones written by a thread,
        # beside decryption and hashing; each starts when first needed, so a verify-only
        # pass starts neither.
        self._creator: ForkedCreator | BackgroundWriter | None = None
        self._writer: BackgroundWriter | None = None
        self.staging_str = str(staging) if staging is not None else ""
        # The disk starts on the files while later ones are still being extracted.
        self.early = swap.EarlySync(staging) if staging is not None else None
        # The process umask, read once: a file's mode needs a chmod only if the umask cut it.
        self.umask = os.umask(0o077)
        os.umask(self.umask)

    def run(self, header: dict[str, Any], archive: Any) -> int:
        """Returns the number of files checked."""
        stored = [e for e in header["entries"] if e["stored"]]
        dirs = parent_dirs(stored)
        index = 0

        def expect() -> tarball.Member | None:
            if index < len(stored):
                entry = stored[index]
                return tarball.Member(entry["path"], entry["size"], entry["mode"], False)
            return None

        members = tarball.iter_members(archive, len(stored) + len(dirs), expect)
        for member in members:
            if member.directory:
                if member.path not in dirs:
                    raise ArchiveError(f"archive folder {member.path!r} is not in the manifest")
                continue
            if index >= len(stored) or stored[index]["path"] != member.path:
                raise ArchiveError(f"archive member {member.path!r} is not the next manifest entry")
            entry = stored[index]
            index += 1
            if member.size != entry["size"]:
                raise ArchiveError(f"{member.path}: archive says {member.size} bytes, manifest says {entry['size']}")
            want = self.final.get(member.path)
            needed = want is not None and want["digest"] == entry["digest"] and member.path not in self.covered
            write = needed and self.staging is not None
            self._member(archive, entry, write)
            if needed:
                self.covered.add(member.path)
            if write:
                self.written.add(member.path)
        if index != len(stored):
            raise ArchiveError(f"archive ends after {index} of {len(stored)} manifest files")
        return index

    def _member(self, archive: Any, entry: dict[str, Any], write: bool) -> None:
        try:
            self._copy(archive, entry, write)
        except OSError as exc:
            raise _disk_error(exc, entry["path"]) from exc

    def _copy(self, archive: Any, entry: dict[str, Any], write: bool) -> None:
        size = entry["size"]
        path = entry["path"]
        data = None
        if size > READ_BLOCK:
            # Streamed to the staging tree as it is hashed (a mismatch discards the tree).
            digest = self._stream_large(archive, entry, write)
        else:
            # Checked whole before anything is written.
            data = archive.read(size)
            if len(data) < size:
                raise _truncated(path)
            digest = blake3.blake3(data).hexdigest()
        tarball.skip_padding(archive, size)
        if digest != entry["digest"]:
            raise ArchiveError(f"{path}: content digest does not match the manifest")
        if data is None:
            return
        if write:
            if self.early is not None:
                self.early.wrote(size)
            self._prepare(path)
            mode = entry["mode"]
            if self._creator is None:
                self._creator = creator()
            self._creator.create(f"{self.staging_str}/{path}", mode, data, path, chmod=bool(mode & self.umask))
        self._advance(size)

    def _stream_large(self, archive: Any, entry: dict[str, Any], write: bool) -> str:
        """Hash (and with ``write`` copy) a large member's data; returns its digest."""
        hasher = blake3.blake3()
        remaining = entry["size"]
        path = entry["path"]
        writer, fd = None, -1
        if write:
            fd = self._open(entry)
            if self._writer is None:
                self._writer = BackgroundWriter()
            writer = self._writer
        early = self.early if write else None
        block = b""
        try:
            while remaining:
                block = archive.read(min(READ_BLOCK, remaining))
                if not block:
                    raise _truncated(path)
                hasher.update(block)
                remaining -= len(block)
                if early is not None:
                    early.wrote(len(block))
                if writer is not None and remaining:
                    writer.write(fd, block, path)
                self._advance(len(block))
        finally:
            if writer is not None:
                # The last block goes with the close: one hand-over for the tail.
                writer.close(fd, path, block if not remaining else b"")
        return hasher.hexdigest()

    def _advance(self, n: int) -> None:
        # Reported in steps of about a block: a call per small file would cost more than the file.
        if self.progress is None:
            return
        self.unreported += n
        if self.unreported >= READ_BLOCK:
            self.progress(self.unreported)
            self.unreported = 0

    def finish(self) -> None:
        """Wait for every write; a failed one is reported here if not before."""
        self._stop_early()
        if self.progress is not None and self.unreported:
            self.progress(self.unreported)
            self.unreported = 0
        try:
            for writer in (self._creator, self._writer):
                if writer is not None:
                    writer.finish()
        except OSError as exc:
            raise _disk_error(exc, exc.filename or "a file") from exc

    def abandon(self) -> None:
        self._stop_early()
        for writer in (self._creator, self._writer):
            if writer is not None:
                writer.abandon()

    def _stop_early(self) -> None:
        if self.early is not None:
            self.early.stop()
            self.early = None

    def _prepare(self, path: str) -> None:
        """Make the folders above ``path`` in the staging tree."""
        assert self.staging is not None
        parent = path.rpartition("/")[0]
        if parent and parent not in self.made_dirs:
            self._make_parents(path)

    def _open(self, entry: dict[str, Any]) -> int:
        path = entry["path"]
        self._prepare(path)
        return open_new(f"{self.staging_str}/{path}", entry["mode"], bool(entry["mode"] & self.umask))

    def _make_parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            if rel in self.made_dirs:
                continue
            folder = f"{self.staging_str}/{rel}"
            # lstat: a folder we make is never a link; refuse anything else in the way.
            if os.path.lexists(folder):
                if os.path.islink(folder) or not os.path.isdir(folder):
                    raise ArchiveError(f"{rel!r} is in the way in the staging folder")
            else:
                os.mkdir(folder, snapshot.dir_mode(rel))
                os.chmod(folder, snapshot.dir_mode(rel))
            self.made_dirs.add(rel)

    def check_complete(self) -> None:
        missing = [p for p in self.final if p not in self.covered]
        if missing:
            raise ArchiveError(f"{len(missing)} files of the snapshot were in no payload of the chain, e.g. {missing[0]}")
