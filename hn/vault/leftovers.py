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
from pathlib import Path


def claim(fd: int) -> bool:
    """Lock a new temp file for its writer; False if a sweep removed it first."""
    # Without flock on this filesystem no sweep can take the lock to remove it either.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)
    return os.fstat(fd).st_nlink > 0


def abandoned(path: Path, remove: bool) -> int | None:
    """The size of ``path`` if it is a regular file no writer holds (removed too, with
    ``remove``); None if a writer holds it, it is gone, or it is not a plain file."""
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
        if remove:
            os.unlink(path)
        return held.st_size
    finally:
        os.close(fd)
