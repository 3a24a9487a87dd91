"""THREATS 12: ENOSPC injected at every write of each vault operation; the old state survives.

Each operation runs through the real command code (``hn.cli.app.main`` in this process, so
the fault can be injected) once per write it makes: the n-th data write, fsync, rename or
sync fails with ENOSPC. After every failure the command has printed one `error:` line,
no file of the append-only stores changed, every other file is whole (old or new), no
temp file is left, and `hn vault verify` passes. The operation then succeeds untouched.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hn.errors import HnError
from hn.vault import atomic, identities, presence
from hn.vault.home import Home
from hn.vault.verify import verify_vault
from tests.support import hn_in_process as hn

DERIVED = {"catalog.json", ".lock"}
APPEND_ONLY = ("events/", "personal/objects/", "shards/")


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in DERIVED and not path.name.startswith("."):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file() and p.name != ".lock"]


class _File:
    """A file object whose writes go through the fault injector."""

    def __init__(self, inner: Any, disk: Disk) -> None:
        self._inner = inner
        self._disk = disk

    def write(self, data: bytes) -> int:
        self._disk.tick()
        return int(self._inner.write(data))

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Disk:
    """Raises ENOSPC at the n-th write-committing call (write, fsync, replace, sync, sync_tree)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
        self.calls = 0
        self.fail_at = fail_at
        for name in ("fsync", "replace", "sync"):
            monkeypatch.setattr(os, name, self.wrap(getattr(os, name)))
        # Trees are flushed with syncfs(2) through ctypes where there is one, not os.sync.
        monkeypatch.setattr(atomic, "sync_tree", self.wrap(atomic.sync_tree))
        real_fdopen = os.fdopen

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(fd, mode, *args, **kwargs)
            return _File(handle, self) if "w" in mode else handle

        monkeypatch.setattr(os, "fdopen", fdopen)

    def tick(self) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*args: Any) -> Any:
            self.tick()
            return real(*args)

        return inner


def run_with_faults(home: Home, operation: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> int:
    failures = 0
    for fail_at in range(1, 80):
        before = snapshot(home.root)
        with monkeypatch.context() as patch:
            disk = Disk(patch, fail_at)
            try:
                operation()
            except HnError as exc:
                failures += 1
                assert "disk full" in exc.message or "No space" in exc.message, exc.message
                failed = True
            else:
                failed = False
        if not failed:
            # Done: either every write ran (calls < fail_at) or the fault hit a directory
            # fsync, which only delays durability of a rename that already happened.
            assert disk.calls < fail_at or verify_vault(home).ok
            return failures
        after = snapshot(home.root)
        for name, digest in before.items():
            if name.startswith(APPEND_ONLY):
                assert after.get(name) == digest, f"{name} changed after ENOSPC at write {fail_at}"
            else:
                assert name in after, f"{name} vanished after ENOSPC at write {fail_at}"
        assert not leftovers(home.root), f"temp files left after ENOSPC at write {fail_at}"
        report = verify_vault(home)
        assert report.ok, (fail_at, report.as_dict()["failed"])
    raise AssertionError("operation never completed")


def test_disk_full_during_vault_operations(home: Home, alice: identities.Identity, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    presence.refresh(home, alice)
    note = tmp_path / "note.txt"
    note.write_text("important\n")
    assert run_with_faults(home, lambda: hn(home, "doc", "add", str(note), "--publish"), monkeypatch) >= 4
    assert run_with_faults(home, lambda: presence.refresh(home, identities.load(home), force=True),
                           monkeypatch) >= 2
    assert run_with_faults(home, lambda: hn(home, "id", "rotate"), monkeypatch) >= 3
    # identity.json is the commit point: a failure after it leaves a finished rotation
    rotated = identities.load(home)
    assert rotated.keys.key_seq >= 1 and rotated.keys.signing_public() == rotated.history.current.signing_public_key
    bob_home = Home(tmp_path / "bob")
    bob = identities.create(bob_home, "bob")
    identities.import_contact(home, bob_home.path("identities", "own", "bob", "identity.json").read_bytes())
    catalog_ids = [p.name for p in home.path("personal", "objects").rglob("*") if p.is_file()]
    assert run_with_faults(home, lambda: hn(home, "doc", "share", catalog_ids[0], "--to", bob.did),
                           monkeypatch) >= 3
    assert len(list(home.path("shards").rglob("*.shard"))) == 1
    assert verify_vault(home).ok
