"""Sealing a shard leaves no temp file behind: not after an interruption (removed at once),
not after a kill (removed by the next share, unless a running share still holds it)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from hn.proto import shard as shard_proto
from hn.proto.canonical import canonical
from hn.vault import identities, leftovers, shards, store
from hn.vault.home import Home
from hn.vault.identities import Identity


def _bob_and_a_doc(home: Home, alice: Identity, tmp_path: Path) -> tuple[str, str]:
    bob_home = Home(tmp_path / "bob")
    bob_home.ensure()
    bob = identities.create(bob_home, "bob")
    identities.import_contact(home, canonical(bob.doc))
    src = tmp_path / "note.txt"
    src.write_text("for bob")
    entry = store.add_files(home, alice.keys, [src], publish=False)[0]
    return bob.did, str(entry["id"])


def temps(home: Home) -> list[str]:
    return sorted(p.name for p in home.path("shards").iterdir() if p.name.startswith(leftovers.SEAL))


def test_an_interrupted_seal_removes_its_temp(home: Home, alice: Identity, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bob, doc = _bob_and_a_doc(home, alice, tmp_path)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(shard_proto, "seal", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shards.share(home, alice, doc, bob)
    assert temps(home) == []


def test_a_killed_seal_s_temp_goes_with_the_next_share_but_a_held_one_stays(home: Home, alice: Identity,
                                                                            tmp_path: Path) -> None:
    bob, doc = _bob_and_a_doc(home, alice, tmp_path)
    folder = home.path("shards")
    folder.mkdir(exist_ok=True)
    (folder / ".seal.killed").write_bytes(b"half a shard")
    held = folder / ".seal.running"
    held.write_bytes(b"a share in progress")
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a share still running in another process holds it
        shared = shards.share(home, alice, doc, bob)
        assert temps(home) == [".seal.running"]
    finally:
        os.close(fd)
    assert store.shard_path(home, shared["id"]).exists()
