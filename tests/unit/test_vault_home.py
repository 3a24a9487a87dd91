from __future__ import annotations

import json
from pathlib import Path

import pytest

from hn.errors import VaultCorrupt
from hn.proto.canonical import canonical
from hn.vault import identities, store
from hn.vault.home import Home
from hn.vault.identities import Identity


def files(home: Home) -> set[str]:
    return {str(p.relative_to(home.root)) for p in home.root.rglob("*") if p.is_file() and p.name != ".lock"}


def head_file(home: Home) -> Path:
    return home.event_files()[-1]


def test_append_chains_and_names_files(home: Home, alice: Identity) -> None:
    event = home.append_event(alice.keys, "test", {"x": 1})
    assert event["seq"] == 2 and head_file(home).name == "000000000002.json"
    assert home.head()[0] == 2


@pytest.mark.parametrize("damage", ["signature", "prev", "garbage", "renamed"])
def test_writers_refuse_a_damaged_head(home: Home, alice: Identity, tmp_path: Path, damage: str) -> None:
    home.append_event(alice.keys, "test", {"x": 1})
    path = head_file(home)
    event = json.loads(path.read_bytes())
    if damage == "signature":  # still canonical JSON, still parses: only the signature tells
        event["data"] = {"x": 2}
        path.write_bytes(canonical(event))
    elif damage == "prev":
        event["prev"] = "1" * 64
        path.write_bytes(canonical(event))
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 10)
    else:
        path.rename(path.with_name("000000000009.json"))
    before = files(home)
    note = tmp_path / "n.txt"
    note.write_text("n")
    with pytest.raises(VaultCorrupt):
        store.add_files(home, alice.keys, [note], publish=True)
    with pytest.raises(VaultCorrupt):
        identities.rotate(home)
    with pytest.raises(VaultCorrupt):
        home.append_event(alice.keys, "test", {})
    with pytest.raises(VaultCorrupt):
        identities.create(home, "second")
    assert files(home) == before
    assert identities.load(home).keys.key_seq == 0
