"""THREATS 12: ENOSPC injected at every write of each vault operation; the old state survives."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hn.errors import HnError
from hn.vault import identities, presence, shards, store
from hn.vault.home import Home
from hn.vault.verify import verify_vault

DERIVED = {"catalog.json", ".lock"}


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in DERIVED and not path.name.startswith("."):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class Disk:
    """Raises ENOSPC at the n-th write-committing call (fsync, replace, sync)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
        self.calls = 0
        self.fail_at = fail_at
        for name in ("fsync", "replace", "sync"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self.wrap(real))

    def wrap(self, real: Callable[..., object]) -> Callable[..., object]:
        def inner(*args: object) -> object:
            self.calls += 1
            if self.calls == self.fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args)

        return inner


def run_with_faults(home: Home, operation: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> int:
    failures = 0
    for fail_at in range(1, 60):
        before = snapshot(home.root)
        with monkeypatch.context() as patch:
            Disk(patch, fail_at)
            try:
                operation()
            except HnError as exc:
                failures += 1
                assert "disk full" in exc.message or "No space" in exc.message, exc.message
                after = snapshot(home.root)
                # Append-only stores (events, objects, shards) never lose or alter a file;
                # every other file is whole (old or new), and no temp file is left behind.
                for name, digest in before.items():
                    if name.startswith(("events/", "personal/objects/", "shards/")):
                        assert after.get(name) == digest, f"{name} changed after ENOSPC at write {fail_at}"
                    else:
                        assert name in after, f"{name} vanished after ENOSPC at write {fail_at}"
                assert not [p for p in home.root.rglob("*.tmp")], "temp file left behind"
                report = verify_vault(home)
                assert report.ok, report.as_dict()["failed"]
                continue
        return failures
    raise AssertionError("operation never completed")


def test_disk_full_during_vault_operations(home: Home, alice: identities.Identity, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    presence.refresh(home, alice)
    note = tmp_path / "note.txt"
    note.write_text("important\n")
    failures = run_with_faults(home, lambda: store.add_files(home, alice.keys, [note], True), monkeypatch)
    assert failures >= 2
    me = identities.load(home)
    assert run_with_faults(home, lambda: presence.refresh(home, me, force=True), monkeypatch) >= 1
    assert run_with_faults(home, lambda: identities.rotate(home), monkeypatch) >= 2
    bob_home = Home(tmp_path / "bob")
    bob_home.ensure()
    bob = identities.create(bob_home, "bob")
    identities.import_contact(home, (bob_home.path("identities", "own", "bob", "identity.json")).read_bytes())
    doc_id = store.load_catalog(home).index_entries()[0]["id"]
    me = identities.load(home)
    assert run_with_faults(home, lambda: shards.share(home, me, doc_id, bob.did), monkeypatch) >= 1
    assert verify_vault(home).ok
