"""Atomic file writes: temp file beside the target, fsync, rename, fsync the folder.

On any failure (ENOSPC included) the temp file is removed and the old version of the
target stays exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from hn.errors import DiskError


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2), where there is one (Linux)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (ImportError, OSError, AttributeError):
        return None


def sync_tree(folder: Path) -> None:
    """Make everything written under ``folder`` durable; OSError if the disk says it failed.

    syncfs(2) flushes the one filesystem that holds the tree: one call instead of an
    fsync per file (about 180 µs each on a vault of 20,000 notes), and, unlike sync(2),
    it does not wait for every other disk of the machine. Elsewhere sync(2) it is. Since
    Linux 5.8 syncfs also reports a failed writeback, which is raised, not hidden.
    """
    call = syncfs()
    if call is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if call(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            if code != errno.ENOSYS:
                raise OSError(code, os.strerror(code))
            os.sync()
    finally:
        os.close(fd)


def _is(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except OSError:  # a path that cannot even be looked at is neither
        return False


def _explain(exc: OSError, target: Path) -> DiskError:
    # Only a file that was there before is "the previous version": say so only then.
    kept = "the previous version is intact" if _is(target.is_file) else "nothing was written"
    if exc.errno == errno.ENOSPC:
        return DiskError(f"disk full while writing {target}; {kept}")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder of the path should be
        blocker = next((p for p in target.parents if _is(p.is_file)), None)
        if blocker is not None:
            return DiskError(f"could not write {target}: {blocker} is a file, not a folder")
    if exc.errno in (errno.EISDIR, errno.EBUSY) and _is(target.is_dir):  # EBUSY: "." or a mount point
        return DiskError(f"could not write {target}: it is a folder, not a file; nothing was written")
    return DiskError(f"could not write {target}: {exc.strerror or exc}; {kept}")


@contextlib.contextmanager
def atomic_writer(target: Path, mode: int = 0o644, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it replaces ``target`` atomically.

    ``durable=False`` skips the fsyncs: after a crash the target may be the old version,
    the new one or a damaged file. Only for hints that are checked when read and rebuilt
    when lost."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _explain(exc, target) from exc
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _explain(exc, target) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    # The new file is in place; a failing directory fsync only leaves the rename's
    # durability to the next sync, it does not undo the write.
    if durable:
        with contextlib.suppress(OSError):
            fsync_dir(target.parent)


def write_bytes(target: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    with atomic_writer(target, mode, durable) as handle:
        handle.write(data)


def write_new(target: Path, data: bytes, mode: int = 0o644) -> bool:
    """Write ``target`` atomically unless it exists already (content-addressed stores)."""
    if target.exists():
        return False
    write_bytes(target, data, mode)
    return True
