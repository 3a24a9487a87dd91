"""Disk writes on a thread of their own, so they overlap the caller's hashing and decoding.

Writing into the page cache is not free: on a small VM a restore spends as long in
``write(2)`` as in decryption and decompression together. ``os.write`` releases the GIL,
so one writer thread lets the two run side by side. Work is handed over in batches (one
queue operation per megabyte or per few hundred small files, not per file) through a
bounded queue, so memory stays at ``depth`` batches whatever the data size.

Large files also get their writeback started as they go (``POSIX_FADV_DONTNEED`` on each
written range: on Linux this starts writing the dirty pages out without waiting), so the
final ``fsync``/``syncfs`` that makes them durable finds little left to do.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import json
import os
import pickle
import queue
import select
import threading
from collections.abc import Iterator
from typing import NamedTuple

from hn.vault import forked

BATCH_BYTES = 1 << 20
BATCH_OPS = 512
ADVISE_EVERY = 8 << 20
ADVISE_FROM = 1 << 20
# A new file only: never an existing one, never through a link.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_new(path: str, mode: int, chmod: bool) -> int:
    """Create ``path`` (``CREATE_FLAGS``) and return its descriptor.

    ``chmod``: the umask cuts ``mode``, so it is set again, exactly, on the open file.
    """
    fd = os.open(path, CREATE_FLAGS, mode)
    if chmod:
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
    return fd


class _Op(NamedTuple):
    fd: int
    data: bytes
    close: bool
    label: str
    path: str | None = None  # create this file first (``fd`` is then unused)
    mode: int = 0
    chmod: bool = False


class _Batches(abc.ABC):
    """The caller's side both writers share: operations gathered into batches of about
    ``BATCH_BYTES`` or ``BATCH_OPS`` and handed over by the subclass's ``_send``."""

    def __init__(self) -> None:
        self._batch: list[_Op] = []
        self._batch_bytes = 0
        self._done = False

    def create(self, path: str, mode: int, data: bytes, label: str, *, chmod: bool = False) -> None:
        """Create ``path`` (``CREATE_FLAGS``) with ``mode``, write ``data``, close it.

        Creating a file costs the kernel more than writing a small one, so for a folder of
        small files this moves most of the work off the caller's thread. ``chmod`` sets
        the exact mode when the umask would cut it. The parent folder must exist already.
        """
        self._add(_Op(-1, data, True, label, path, mode, chmod), len(data))

    @abc.abstractmethod
    def _failure(self) -> OSError | None:
        """The first failure the writer has met so far, if any."""

    @abc.abstractmethod
    def _send(self) -> None:
        """Hand the gathered batch over to the writer."""

    def _add(self, op: _Op, size: int) -> None:
        if (error := self._failure()) is not None:
            raise error
        if self._done:
            raise RuntimeError("writer already finished")
        self._push(op, size)

    def _push(self, op: _Op, size: int) -> None:
        self._batch.append(op)
        self._batch_bytes += size
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_OPS:
            self._send()


class BackgroundWriter(_Batches):
    """Ordered writes and closes of file descriptors the caller opened.

    The first failure stops further writes (handed-over descriptors are still closed) and
    is raised by the next call, as an ``OSError`` whose ``filename`` is the label of the
    file it concerned.
    """

    def __init__(self, depth: int = 16) -> None:
        super().__init__()
        self._queue: queue.Queue[list[_Op] | None] = queue.Queue(maxsize=depth)
        self._applier = _Applier()  # used by the writer thread only
        self._thread = threading.Thread(target=self._run, name="hn-writer", daemon=True)
        self._thread.start()

    # -- caller side ------------------------------------------------------------------
    def write(self, fd: int, data: bytes, label: str) -> None:
        self._add(_Op(fd, data, False, label), len(data))

    def close(self, fd: int, label: str, data: bytes = b"") -> None:
        """Write ``data`` (if any) and close ``fd``, after everything queued before.

        The descriptor is closed even when an earlier write failed (that failure is then
        raised) or the writer has stopped.
        """
        if self._done:
            os.close(fd)
            return
        self._push(_Op(fd, data, True, label), len(data))
        if (error := self._failure()) is not None:
            raise error

    def _failure(self) -> OSError | None:
        return self._applier.error

    def finish(self) -> None:
        """Wait until every queued write is done; raises the first failure."""
        self._stop()
        if (error := self._failure()) is not None:
            raise error

    def abandon(self) -> None:
        """Stop (closing every descriptor handed over) and drop any failure."""
        self._stop()

    def _send(self) -> None:
        if self._batch:
            self._queue.put(self._batch)
            self._batch, self._batch_bytes = [], 0

    def _stop(self) -> None:
        if not self._done:
            self._done = True
            self._send()
            self._queue.put(None)
        self._thread.join()

    # -- writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            self._applier.apply(batch)


class _Applier:
    """Carries out batches of operations in order, on whichever thread or process runs it.

    The first failure stops further writes and creations; descriptors are still closed.
    """

    def __init__(self) -> None:
        self.error: OSError | None = None
        self._advised: dict[int, tuple[int, int]] = {}  # fd -> (advised up to, written)

    def apply(self, batch: list[_Op]) -> None:
        for op in batch:
            if op.path is not None:
                if self.error is None:
                    self._create(op)
                continue
            if op.data and self.error is None:
                try:
                    self._write_all(op.fd, op.data)
                except OSError as exc:
                    self._fail(exc, op.label)
            if op.close:
                self._close(op.fd, op.label)

    def _create(self, op: _Op) -> None:
        assert op.path is not None
        try:
            fd = open_new(op.path, op.mode, op.chmod)
        except OSError as exc:
            self._fail(exc, op.label)
            return
        try:
            if op.data:
                self._write_all(fd, op.data)
        except OSError as exc:
            self._fail(exc, op.label)
        self._close(fd, op.label)

    def _fail(self, exc: OSError, label: str) -> None:
        if self.error is None:
            error = OSError(exc.errno, exc.strerror or str(exc), label)
            error.__cause__ = exc
            self.error = error

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        advised, written = self._advised.get(fd, (0, 0))
        written += len(data)
        if written - advised >= ADVISE_EVERY:
            _start_writeback(fd, advised, written - advised)
            advised = written
        self._advised[fd] = (advised, written)

    def _close(self, fd: int, label: str) -> None:
        advised, written = self._advised.pop(fd, (0, 0))
        # Small files are left to the final sync, which batches them better.
        if written >= ADVISE_FROM and written > advised and self.error is None:
            _start_writeback(fd, advised, written - advised)
        try:
            os.close(fd)
        except OSError as exc:
            self._fail(exc, label)


class ForkedCreator(_Batches):
    """``create`` as BackgroundWriter has it, carried out by a forked child (hn.vault.forked).

    A thread that creates files waits for the caller's GIL at each of its system calls: a
    restore of 20,000 small files spent more time handing the GIL back and forth than
    creating them. Batches go to the child pickled (both ends are this program); it
    reports the first failure as soon as it happens and a last line when it is done.
    Memory stays bounded: the pipe holds about one batch and the caller waits while full.
    """

    def __init__(self) -> None:
        super().__init__()
        self._error: OSError | None = None
        self._replies = b""
        child = forked.spawn(_creator_child)
        self._pid, self._in = child.pid, child.from_child
        self._out = os.fdopen(child.to_child, "wb", buffering=BATCH_BYTES)

    def _failure(self) -> OSError | None:
        return self._error

    def finish(self) -> None:
        """Wait until every file is created; raises the first failure."""
        if not self._done:
            self._send()
            self._put(b"")  # the end marker
            self._stop()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop the child (files already created stay) and drop any failure."""
        self._stop()
        self._error = None

    def _send(self) -> None:
        if self._batch:
            self._check_replies()
            self._put(pickle.dumps(self._batch, protocol=pickle.HIGHEST_PROTOCOL))
            self._batch, self._batch_bytes = [], 0

    def _put(self, frame: bytes) -> None:
        try:
            forked.write_frame(self._out, frame)
        except BrokenPipeError:
            self._stop()
            if self._error is None:
                self._error = OSError(errno.EIO, "the file-creating process stopped unexpectedly")
            raise self._error from None

    def _check_replies(self) -> None:
        if select.select([self._in], [], [], 0)[0]:
            self._replies += os.read(self._in, 65536)
            self._read_error()
            if self._error is not None:
                raise self._error

    def _read_error(self) -> None:
        for line in self._replies[: self._replies.rfind(b"\n") + 1].splitlines():
            reply = json.loads(line)
            if "errno" in reply and self._error is None:
                self._error = OSError(reply["errno"], reply["strerror"], reply["label"])

    def _stop(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(BrokenPipeError):
            self._out.close()  # the child sees the end of its input and exits
        while chunk := os.read(self._in, 65536):
            self._replies += chunk
        os.close(self._in)
        os.waitpid(self._pid, 0)
        self._read_error()
        if self._error is None and not self._replies.endswith(b'{"done": true}\n'):
            self._error = OSError(errno.EIO, "the file-creating process stopped unexpectedly")


def _creator_child(data_r: int, reply_w: int) -> None:
    """The child's loop: batches in, files created, one line per event out."""
    applier = _Applier()
    reported = False
    # File objects, not os.write: the pipes are not the files whose writes can fail.
    reply = os.fdopen(reply_w, "wb", buffering=0)
    with os.fdopen(data_r, "rb", buffering=BATCH_BYTES) as source, reply:
        while frame := forked.read_frame(source):
            applier.apply(pickle.loads(frame))
            if applier.error is not None and not reported:
                reported = True
                error = applier.error
                reply.write(json.dumps({"errno": error.errno, "strerror": error.strerror,
                                        "label": error.filename}).encode() + b"\n")
        if frame is not None:  # the parent's end marker, not a closed pipe
            reply.write(b'{"done": true}\n')


def creator() -> ForkedCreator | BackgroundWriter:
    """A file creator for many small files: a child process where fork is safe (Linux)."""
    return ForkedCreator() if forked.AVAILABLE else BackgroundWriter()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class Sink:
    """A ``write()``-able stream over one descriptor of a BackgroundWriter."""

    def __init__(self, writer: BackgroundWriter, fd: int, label: str) -> None:
        self.writer, self.fd, self.label = writer, fd, label

    def write(self, data: bytes) -> int:
        self.writer.write(self.fd, bytes(data), self.label)
        return len(data)


@contextlib.contextmanager
def sink(fd: int, label: str) -> Iterator[Sink]:
    """Stream into ``fd`` through a writer thread; every write is done when this exits.

    The descriptor stays the caller's to flush, sync and close.
    """
    writer = BackgroundWriter()
    try:
        yield Sink(writer, fd, label)
        writer.finish()
    finally:
        writer.abandon()
