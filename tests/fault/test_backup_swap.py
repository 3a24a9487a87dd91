"""Crash at every step of the restore swap, and disk full while staging: old or new, never mixed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import blake3
import pytest

from hn.backup import create, restore, swap
from hn.backup.restore import FileSource
from hn.errors import DiskError, InputError
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


def test_a_kept_folder_merges_with_one_the_new_tree_has_and_nothing_is_lost(tmp_path: Path) -> None:
    """Something may have written into the new tree before an interrupted restore was
    finished: the old tree's entries join it, and a file on both sides is kept beside."""
    target = tmp_path / "vault"
    for name in ("cache", "hosted"):
        (target / name).mkdir(parents=True)
        (target / name / "old.bin").write_text(f"old {name}")
    (target / "hosted" / "both.bin").write_text("old both")
    (target / "hosted" / "same.bin").write_text("same")
    staging = swap.prepare(target)
    (staging / "cache").mkdir()  # made empty for the vault's layout
    (staging / "hosted").mkdir()
    (staging / "hosted" / "new.bin").write_text("restored")
    (staging / "hosted" / "both.bin").write_text("new both")
    (staging / "hosted" / "same.bin").write_text("same")
    moved = swap.commit(target, staging, {"id": "x"}, ("cache", "hosted"))
    assert moved == ["cache", "hosted"]
    assert {p: (target / p).read_text() for p in _tree(target)} == {
        "cache/old.bin": "old cache", "hosted/old.bin": "old hosted", "hosted/new.bin": "restored",
        "hosted/both.bin": "new both", "hosted/both.bin.before-restore": "old both", "hosted/same.bin": "same"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault"]


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
    after = _tree(target)
    assert after.pop("run/serve.lock") == blake3.blake3(b"").hexdigest()  # held while it ran
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_one_restore_or_recovery_per_folder_at_a_time(tmp_path: Path) -> None:
    """While another process restores into a folder, a restore there is refused and a
    recovery leaves that restore's staging alone."""
    import fcntl
    import subprocess
    import sys

    target = tmp_path / "vault"
    _make_tree(target, "old")
    staging = swap.prepare(target)  # as another restore has it, mid-way
    _make_tree(staging, "new")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()"), str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"another restore into {tmp_path} .* is running"):
            swap.prepare(target)
        assert swap.recover(target) is None  # not ours to finish
        assert staging.is_dir() and _tree(staging) != _tree(target)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert swap.recover(target) == "removed an unfinished staging folder"
    fd = os.open(tmp_path, os.O_RDONLY)  # and the guard is free again
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_an_old_tree_with_no_new_one_in_place_goes_back(tmp_path: Path) -> None:
    target = tmp_path / "vault"
    _make_tree(target, "old")
    before = _tree(target)
    staging = swap.prepare(target)
    _, old, journal = swap.paths(target)
    journal.write_text("{}")
    os.replace(target, old)
    staging.rmdir()  # as a second process rolling back would have left it
    assert swap.recover(target) == "rolled back an interrupted restore (the previous vault is in place)"
    assert _tree(target) == before and not old.exists() and not journal.exists()


def test_any_command_finishes_an_interrupted_restore_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import run_hn, run_json

    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    full = run_json(home, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    (home / "personal" / "after.txt").write_text("written after the backup")

    def hook(name: str) -> None:
        if name == "keep":
            raise Crash(name)

    monkeypatch.setattr(swap, "fault_hook", hook)
    with pytest.raises(Crash):
        restore.restore(FileSource(Path(full["header"]).parent), full["id"], Home(home), home)
    monkeypatch.setattr(swap, "fault_hook", None)
    assert swap.pending(home)
    proc = run_hn(home, "vault", "status")
    assert "completed an interrupted restore (the restored vault is in place)" in proc.stderr
    assert not swap.pending(home) and not (home / "personal" / "after.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "vault"]
