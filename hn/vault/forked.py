"""A forked helper process joined to its parent by two pipes.

Python threads share one GIL, so a thread that makes a few system calls per small file
waits for the caller at every one of them; a forked child has a GIL of its own and runs
beside the caller on another core. The child starts with a copy of the parent's memory,
so only its work's input needs streaming. (Reading a backup's files ahead in a child was
tried too: there the child only competed with compression for the cores, and a backup of
20,000 notes took a fifth longer.)
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import signal
import warnings
from collections.abc import Callable
from typing import BinaryIO, NamedTuple

PIPE_BYTES = 1 << 20

# Linux only: elsewhere fork beside threads is unsafe enough (macOS) to stay with threads.
AVAILABLE = hasattr(os, "fork") and os.uname().sysname == "Linux"


class Child(NamedTuple):
    pid: int
    to_child: int  # parent's write end; the child sees end-of-input when it is closed
    from_child: int  # parent's read end; end-of-input once the child has exited


def spawn(work: Callable[[int, int], None]) -> Child:
    """Fork; the child runs ``work(from_parent, to_parent)`` and exits (0 when it returns)."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    for fd in (down_w, up_w):
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
    # No collection may run in the child: a finaliser there could flush a file object
    # the parent still owns.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns that a fork beside other threads may deadlock the child on
            # a lock one of them held. These children take no such lock: they make system
            # calls, hash, pickle plain tuples and leave with os._exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except BaseException:
        for fd in (down_r, down_w, up_r, up_w):
            os.close(fd)
        raise
    finally:
        if collecting:
            gc.enable()
    if pid == 0:  # pragma: no cover - the child; its work is checked through the parent
        gc.disable()
        status = 1
        try:
            os.close(down_w)
            os.close(up_r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
            work(down_r, up_w)
            status = 0
        finally:
            os._exit(status)
    os.close(down_r)
    os.close(up_w)
    return Child(pid, down_w, up_r)


def read_frame(source: BinaryIO) -> bytes | None:
    """One length-prefixed frame from a buffered binary stream; None at a clean end.

    A frame cut short (the writer died mid-frame) raises EOFError.
    """
    head = source.read(8)
    if not head:
        return None
    size = int.from_bytes(head, "little") if len(head) == 8 else -1
    body = source.read(size) if size >= 0 else b""
    if size < 0 or len(body) != size:
        raise EOFError("frame cut short")
    return body


def write_frame(sink: BinaryIO, body: bytes) -> None:
    sink.write(len(body).to_bytes(8, "little"))
    sink.write(body)
    sink.flush()
