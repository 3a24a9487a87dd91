"""An atomic write that fails says what is wrong, and speaks of "the previous version"
only where there was one."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hn.errors import DiskError
from hn.vault import atomic


def test_a_folder_in_the_way_is_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    (folder / "inside").mkdir(parents=True)
    for target in (folder, tmp_path / "empty"):
        target.mkdir(exist_ok=True)
        with pytest.raises(DiskError) as caught:
            atomic.write_bytes(target, b"data")
        assert caught.value.message == f"could not write {target}: it is a folder, not a file; nothing was written"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty", "files", "inside"]  # no temp file left


def test_the_previous_version_is_mentioned_only_when_there_is_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    old = tmp_path / "old.json"
    old.write_bytes(b"before")
    new = tmp_path / "new.json"
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskError) as caught:
        atomic.write_bytes(old, b"after")
    assert caught.value.message == f"disk full while writing {old}; the previous version is intact"
    assert old.read_bytes() == b"before"
    with pytest.raises(DiskError) as caught:
        atomic.write_bytes(new, b"after")
    assert caught.value.message == f"disk full while writing {new}; nothing was written"
    assert not new.exists()
