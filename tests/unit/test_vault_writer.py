"""The background writer and the forked creator: order, every descriptor closed, failures
named, early writeback, and a child process that never outlives its work."""

from __future__ import annotations

import errno
import gc
import io
import os
import signal
from pathlib import Path

import pytest

from hn.vault import forked
from hn.vault import writer as writer_mod
from hn.vault.writer import ADVISE_EVERY, BackgroundWriter, ForkedCreator

CREATORS = [BackgroundWriter, ForkedCreator]


def _open_fds() -> int:
    # Files an earlier test left unclosed would otherwise be closed by the collector in
    # the middle of a count.
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def test_many_files_written_in_order_and_closed(tmp_path: Path) -> None:
    before = _open_fds()
    w = BackgroundWriter(depth=2)
    expected = {}
    for i in range(1500):
        body = os.urandom(i % 7) * (i % 300)
        fd = _create(tmp_path / f"f{i}")
        half = len(body) // 2
        w.write(fd, body[:half], f"f{i}")
        w.close(fd, f"f{i}", body[half:])
        expected[f"f{i}"] = body
    w.finish()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == expected
    assert _open_fds() == before


def test_failure_is_named_and_every_descriptor_still_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write

    def full(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("f7"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(writer_mod.os, "write", full)
    before = _open_fds()
    w = BackgroundWriter()
    raised = None
    for i in range(20):
        fd = _create(tmp_path / f"f{i}")
        try:
            w.close(fd, f"label-{i}", b"x" * 100)
        except OSError as exc:
            raised = exc
    with pytest.raises(OSError) as info:
        w.finish()
    for exc in (raised, info.value):
        assert exc is None or (exc.errno == errno.ENOSPC and exc.filename == "label-7")
    assert info.value.filename == "label-7"
    # Nothing after the failure was written, and no descriptor was left open.
    assert (tmp_path / "f6").read_bytes() == b"x" * 100
    assert all((tmp_path / f"f{i}").read_bytes() == b"" for i in range(7, 20))
    assert _open_fds() == before
    w.abandon()  # stopping twice is harmless


def test_large_streams_start_writeback_as_they_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    advised: list[tuple[int, int]] = []
    monkeypatch.setattr(writer_mod.os, "posix_fadvise",
                        lambda fd, offset, length, advice: advised.append((offset, length)))
    block = os.urandom(1 << 20)
    fd = _create(tmp_path / "big")
    with writer_mod.sink(fd, "big") as out:
        for _ in range(20):
            out.write(block)
    os.close(fd)
    assert (tmp_path / "big").stat().st_size == 20 << 20
    assert advised == [(0, ADVISE_EVERY), (ADVISE_EVERY, ADVISE_EVERY)]
    # Through close(), the tail is advised too.
    advised.clear()
    w = BackgroundWriter()
    fd = _create(tmp_path / "big2")
    for _ in range(9):
        w.write(fd, block, "big2")
    w.close(fd, "big2", block)
    # A 3 MiB file is advised once, at its close; a small one is left to the final sync.
    fd = _create(tmp_path / "mid")
    w.close(fd, "mid", block * 3)
    fd = _create(tmp_path / "small")
    w.close(fd, "small", b"s" * 1000)
    w.finish()
    assert advised == [(0, ADVISE_EVERY), (ADVISE_EVERY, 2 << 20), (0, 3 << 20)]


def test_a_sink_whose_caller_fails_stops_its_thread(tmp_path: Path) -> None:
    fd = _create(tmp_path / "x")
    with pytest.raises(ValueError), writer_mod.sink(fd, "x") as out:
        out.write(b"abc")
        raise ValueError("caller failed")
    os.close(fd)
    assert (tmp_path / "x").read_bytes() == b"abc"


@pytest.mark.parametrize("make", CREATORS)
def test_create_makes_new_files_with_exact_modes_and_closes_them(tmp_path: Path, make: type) -> None:
    before = _open_fds()
    w = make()
    old = os.umask(0o077)
    try:
        for i in range(600):
            mode = (0o644, 0o600)[i % 2]
            w.create(str(tmp_path / f"n{i}"), mode, b"x" * i, f"n{i}", chmod=bool(mode & 0o077))
        w.finish()
    finally:
        os.umask(old)
    for i in range(600):
        path = tmp_path / f"n{i}"
        assert path.read_bytes() == b"x" * i
        assert path.stat().st_mode & 0o777 == (0o644, 0o600)[i % 2]
    assert _open_fds() == before


@pytest.mark.parametrize("make", CREATORS)
@pytest.mark.parametrize("in_the_way", ["file", "link"])
def test_create_never_replaces_a_file_or_follows_a_link(tmp_path: Path, in_the_way: str, make: type) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    target = tmp_path / "target"
    if in_the_way == "file":
        target.write_bytes(b"keep")
    else:
        target.symlink_to(outside)
    w = make()
    w.create(str(target), 0o600, b"new", "target")
    with pytest.raises(OSError) as caught:
        w.finish()
    assert caught.value.filename == "target"
    assert outside.read_bytes() == b"keep"
    assert in_the_way == "link" or target.read_bytes() == b"keep"


def _child_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_forked_creator_reports_a_failure_before_the_end_and_stops_creating(tmp_path: Path) -> None:
    before = _open_fds()
    w = ForkedCreator()
    # The fifth file's folder does not exist: its creation fails in the child.
    raised = None
    for i in range(5000):
        folder = tmp_path if i != 4 else tmp_path / "missing"
        try:
            w.create(str(folder / f"n{i}"), 0o600, b"y" * 2000, f"n{i}")
        except OSError as exc:
            raised = exc
            break
    # The failure came back while files were still being handed over, not only at the end.
    assert raised is not None and raised.filename == "n4" and raised.errno == errno.ENOENT
    with pytest.raises(OSError) as info:
        w.finish()
    assert info.value.filename == "n4"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"n{i}" for i in range(4)]
    assert _child_gone(w._pid)
    assert _open_fds() == before


def test_forked_creator_whose_child_dies_says_so(tmp_path: Path) -> None:
    w = ForkedCreator()
    os.kill(w._pid, signal.SIGKILL)
    with pytest.raises(OSError, match="file-creating process stopped unexpectedly"):
        for i in range(2000):
            w.create(str(tmp_path / f"n{i}"), 0o600, b"z" * 4000, f"n{i}")
        w.finish()
    w.abandon()
    assert _child_gone(w._pid)


def test_abandoned_forked_creator_leaves_no_process_or_descriptor(tmp_path: Path) -> None:
    before = _open_fds()
    w = ForkedCreator()
    for i in range(10):
        w.create(str(tmp_path / f"n{i}"), 0o600, b"a", f"n{i}")
    w.abandon()
    w.abandon()
    assert _child_gone(w._pid)
    assert _open_fds() == before
    with pytest.raises(RuntimeError):
        w.create(str(tmp_path / "late"), 0o600, b"a", "late")


def test_frames_round_trip_and_a_cut_frame_is_an_error() -> None:
    out = io.BytesIO()
    for body in (b"one", b"", b"x" * 70_000):
        forked.write_frame(out, body)
    whole = out.getvalue()
    source = io.BytesIO(whole)
    assert [forked.read_frame(source) for _ in range(3)] == [b"one", b"", b"x" * 70_000]
    assert forked.read_frame(source) is None  # a clean end
    for cut in (3, 8 + 2, len(whole) - 1):
        source = io.BytesIO(whole[:cut] if cut < 11 else whole[11:cut])
        with pytest.raises(EOFError):
            while forked.read_frame(source) is not None:
                pass
