"""Crash at every step of the restore swap, and disk full while staging: old or new, never mixed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import blake3
import pytest

from hn.backup import create, restore, swap
from hn.backup.restore import FileSource
from hn.errors import DiskError
from hn.vault.home import Home
from hn.vault.identities import Identity

STEPS = ("sync", "journal", "move-old", "move-new", "keep", "cleanup", "journal-remove")


class Crash(BaseException):
    """Stands for kill -9: nothing after the crash point runs, no clean-up handler either."""


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): blake3.blake3(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _make_tree(root: Path, tag: str) -> None:
    for i in range(5):
        path = root / f"d{i % 2}" / f"f{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{tag} {i}")


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_swap_step(tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the step, the tree is old or new; and what the swap keeps from the old tree
    (folders and a file no backup holds) is never lost, wherever it then is."""
    target = tmp_path / "vault"
    _make_tree(target, "old")
    (target / "backups").mkdir()
    (target / "backups" / "b.backup.json").write_text("a backup")
    (target / "d1" / "kept.json").write_text("a record")
    kept = {"backups/b.backup.json": _tree(target)["backups/b.backup.json"],
            "d1/kept.json": _tree(target)["d1/kept.json"]}
    old = _tree(target)
    staging = swap.prepare(target)
    _make_tree(staging, "new")
    new = _tree(staging)

    def hook(name: str) -> None:
        if name == step:
            raise Crash(name)

    monkeypatch.setattr(swap, "fault_hook", hook)
    with pytest.raises(Crash):
        swap.commit(target, staging, {"id": "x"}, ("backups", "d1/kept.json", "not-there"))
    monkeypatch.setattr(swap, "fault_hook", None)
    # The next restore (or `hn vault backup create`) starts with recover().
    swap.recover(target)
    state = _tree(target)
    # Before the commit point the old tree stays; from it on, the new one with what is kept.
    assert state == ({**new, **kept} if STEPS.index(step) >= STEPS.index("keep") else old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault"]


def test_a_kept_folder_replaces_an_empty_one_but_not_a_restored_one(tmp_path: Path) -> None:
    target = tmp_path / "vault"
    for name in ("cache", "hosted"):
        (target / name).mkdir(parents=True)
        (target / name / "old.bin").write_text(f"old {name}")
    staging = swap.prepare(target)
    (staging / "cache").mkdir()  # made empty for the vault's layout
    (staging / "hosted").mkdir()
    (staging / "hosted" / "new.bin").write_text("restored")
    moved = swap.commit(target, staging, {"id": "x"}, ("cache", "hosted"))
    assert moved == ["cache"]
    assert _tree(target) == {"cache/old.bin": _tree(target)["cache/old.bin"],
                             "hosted/new.bin": _tree(target)["hosted/new.bin"]}
    assert (target / "cache" / "old.bin").read_text() == "old cache"


def test_disk_full_while_staging_keeps_old_vault(alice: Identity, home: Home, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        (home.path("personal") / f"file{i}").write_bytes(os.urandom(5000))
    result = create.create(home, alice, tmp_path / "out")
    target = tmp_path / "restored"
    _make_tree(target, "previous")
    (target / "events").mkdir()  # a vault (a restore replaces only an empty folder or a vault)
    before = _tree(target)
    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    # Writes run on the restore's writer thread; the failure still names the file.
    monkeypatch.setattr("hn.vault.writer.os.write", full)
    with pytest.raises(DiskError, match=r"could not write [\w/.-]+ into the staging folder: No space left"):
        restore.restore(FileSource(result.header_path.parent), result.header["id"], home, target)
    assert _tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
