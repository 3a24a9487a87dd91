from __future__ import annotations

from pathlib import Path

import pytest

from hn.errors import HnError
from hn.proto import timefmt
from hn.proto.presence import verify_presence
from hn.vault import atomic, identities, presence, store
from hn.vault.home import Home
from hn.vault.identities import Identity
from hn.vault.verify import verify_vault


def test_resigned_only_when_something_changes(home: Home, alice: Identity, tmp_path: Path) -> None:
    before = int(timefmt.now())
    first, changed = presence.refresh(home, alice)
    # The seq is at least the time of signing, so a restored vault signs above what it signed before.
    assert changed and first["seq"] >= before and first["index"] == {"root": store.index_root([]), "size": 0, "cursor": 0}
    verify_presence(first, alice.history)
    again, changed = presence.refresh(home, alice)
    assert not changed and again == first
    note = tmp_path / "a.txt"
    note.write_text("a")
    store.add_files(home, alice.keys, [note], publish=False)
    assert presence.refresh(home, alice) == (first, False), "an unpublished document is not in the index"
    entries = store.add_files(home, alice.keys, [note], publish=True)
    second, changed = presence.refresh(home, alice)
    assert changed and second["seq"] > first["seq"]
    assert second["index"]["size"] == 1 and second["index"]["root"] == store.index_root(
        store.load_catalog(home).index_entries())
    assert entries[0]["published"]


def test_renewed_before_expiry(home: Home, alice: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    start = 1767225600.0
    monkeypatch.setattr(timefmt, "now", lambda: start)
    first, _ = presence.refresh(home, alice)
    monkeypatch.setattr(timefmt, "now", lambda: start + presence.LIFETIME - presence.RENEW_BEFORE - 10)
    assert presence.refresh(home, alice)[1] is False
    later = start + presence.LIFETIME - presence.RENEW_BEFORE + 10
    monkeypatch.setattr(timefmt, "now", lambda: later)
    renewed, changed = presence.refresh(home, alice)
    assert first["seq"] == int(start)  # at least the Unix time of signing
    assert changed and renewed["seq"] == int(later) and renewed["expires_at"] > first["expires_at"]


def test_rotation_resigns_with_new_key(home: Home, alice: Identity) -> None:
    first, _ = presence.refresh(home, alice)
    rotated = identities.rotate(home)
    doc, changed = presence.refresh(home, rotated)
    assert changed and doc["key_seq"] == 1 and doc["seq"] == first["seq"] + 1
    verify_presence(doc, rotated.history)
    verify_presence(first, rotated.history)  # signed before the rotation: still valid


def test_seq_never_goes_back(home: Home, alice: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = presence.refresh(home, alice)
    # the file is lost: the event log still knows the high-water mark
    presence.path_for(home, alice.did).unlink()
    doc, _ = presence.refresh(home, alice)
    assert doc["seq"] == first["seq"] + 1
    # the file write fails after its event was logged: that seq is never signed again
    real = atomic.write_bytes

    def full(target: Path, data: bytes, mode: int = 0o644) -> None:
        if target.parent.name == "presence":
            raise atomic.DiskError("disk full")
        real(target, data, mode)

    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(HnError):
        presence.refresh(home, alice, force=True)
    monkeypatch.setattr(atomic, "write_bytes", real)
    logged = max(e["data"]["seq"] for e in home.events() if e["kind"] == "presence.publish")
    assert logged == doc["seq"] + 1
    after, _ = presence.refresh(home, alice, force=True)
    assert after["seq"] == logged + 1
    assert verify_vault(home).ok
