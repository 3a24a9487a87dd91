"""Temp files a killed writer left behind, told apart from those a running writer holds.

A writer takes an exclusive flock on its temp file as soon as it exists (``claim``) and
keeps it until the file has its final name; the lock goes with the process, however it
ends. So a temp file whose lock can be taken is a leftover, and ``abandoned`` removes it
only while holding that lock: a writer whose new file was unlinked before it could lock
it sees that (``claim`` returns False) and makes another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from hn.errors import storage_failure

# The temp files hn's writers hold while they write, each a dot-file beside its target:
# `doc add` (hn.vault.store), sealed shards (hn.vault.shards), mirrored artefacts
# (hn.federation.sync) and a backup payload being written (hn.backup.create).
ADD = ".add."
SEAL = ".seal."
MIRROR = ".mirror."
INCOMING = ".incoming-"
PREFIXES = (ADD, SEAL, MIRROR, INCOMING)


def claim(fd: int) -> bool:
    """Lock a new temp file for its writer; False if a sweep removed it first."""
    # Without flock on this filesystem no sweep can take the lock to remove it either.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)
    return os.fstat(fd).st_nlink > 0


def new_temp(folder: Path, prefix: str) -> tuple[int, Path]:
    """A new temp file in ``folder``, open and claimed; held as long as the descriptor is
    open (a writer renames it into place before closing it)."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
        try:
            if claim(fd):
                return fd, Path(tmp)
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        os.close(fd)  # swept between its creation and the lock: make another


def found(folder: Path, matches: Callable[[str], bool], *, remove: bool,
          orphaned: Callable[[Path], bool] | None = None) -> list[tuple[Path, int]]:
    """The leftovers in ``folder`` whose names ``matches`` (removed, with ``remove``), with
    their sizes. One that cannot be removed (a read-only folder, say) stays and is not
    listed; this machine's storage failing is raised. ``orphaned``, if given, is asked
    about each unheld file while its lock is held, and only files it confirms count."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []  # no folder yet, or one that cannot be read: nothing of ours to find
    out = []
    for name in names:
        if not matches(name):
            continue
        try:
            size = abandoned(folder / name, remove, orphaned)
        except OSError as exc:
            if (failure := storage_failure(exc)) is not None:
                raise failure from exc
            continue
        if size is not None:
            out.append((folder / name, size))
    return out


def abandoned(path: Path, remove: bool, orphaned: Callable[[Path], bool] | None = None) -> int | None:
    """The size of ``path`` if it is a regular file no writer holds (removed too, with
    ``remove``); None if a writer holds it, it is gone, or it is not a plain file, or
    ``orphaned`` (asked while the lock is held) says it is not a leftover after all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # a writer in another process holds it
        held = os.fstat(fd)
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            return None  # renamed to its final name, or swept, while we waited to open it
        if not stat.S_ISREG(held.st_mode) or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return None
        if orphaned is not None and not orphaned(path):
            return None
        if remove:
            os.unlink(path)
        return held.st_size
    finally:
        os.close(fd)
