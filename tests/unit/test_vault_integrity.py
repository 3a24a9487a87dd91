"""Integrity of the vault's own files: interrupted adds, the catalogue cache, verify's reports."""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import pytest

from hn.vault import leftovers, store
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import logged


def temps(home: Home) -> list[str]:
    folder = home.path("personal", "objects")
    return sorted(n for n in os.listdir(folder) if n.startswith(".add.")) if folder.is_dir() else []


class _StopAfterFirstBlock:
    """A BLAKE3 hasher whose second update is a Ctrl-C."""

    def __init__(self) -> None:
        self.calls = 0

    def update(self, data: Any) -> None:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt

    def hexdigest(self) -> str:
        raise AssertionError("never reached")


def test_ctrl_c_during_a_copy_leaves_no_temp_file(home: Home, alice: Identity, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 4096)
    monkeypatch.setattr(store, "READ_BLOCK", 512)
    monkeypatch.setattr(store, "blake3", types.SimpleNamespace(blake3=_StopAfterFirstBlock))
    before = home.head()
    with pytest.raises(KeyboardInterrupt):
        store.add_files(home, alice.keys, [big], publish=False)
    assert temps(home) == [] and home.head() == before


def test_sweep_takes_abandoned_temps_only(home: Home, alice: Identity, tmp_path: Path) -> None:
    folder = home.path("personal", "objects")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".add.killed").write_bytes(b"half of a file")
    fd, held = leftovers.new_temp(folder, leftovers.ADD)  # an add still running, in this process
    try:
        assert [p.name for p in store.leftover_temps(home)] == [".add.killed"]
        note = tmp_path / "n.txt"
        note.write_text("n")
        store.add_files(home, alice.keys, [note], publish=False)
        assert temps(home) == [held.name]
        assert store.leftover_temps(home) == []
    finally:
        os.close(fd)
    assert store.leftover_temps(home) == [held]
    assert store.sweep_temps(home) == [held] and temps(home) == []


@pytest.mark.parametrize("damage", [
    lambda c: c["entries"][next(iter(c["entries"]))].pop("digest"),
    lambda c: c["entries"][next(iter(c["entries"]))].update(size="12"),
    lambda c: c["entries"][next(iter(c["entries"]))].update(kind="note"),
    lambda c: c["entries"].update({"0" * 64: []}),
    lambda c: c.update(entries=[]),
    lambda c: c.update(head_seq=None),
])
def test_a_damaged_catalogue_entry_is_rebuilt(home: Home, alice: Identity, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture, damage: Any) -> None:
    from hn.proto.canonical import canonical, loads_canonical

    note = tmp_path / "n.txt"
    note.write_text("n")
    store.add_files(home, alice.keys, [note], publish=True)
    cache = home.path(*store.CATALOG)
    body = loads_canonical(cache.read_bytes())
    damage(body)
    cache.write_bytes(canonical(body))
    with pytest.raises(ValueError):
        store.parse_catalog(cache.read_bytes())
    with logged(caplog, "hn.vault") as events:
        catalog = store.load_catalog(home)
        assert len(events("catalog.rebuilt")) == 1
    assert catalog.entries == store.replay(home).entries and catalog.index_entries()
    assert store.parse_catalog(cache.read_bytes()).entries == catalog.entries


def test_a_fifo_put_where_a_file_was_is_refused_not_waited_on(home: Home, alice: Identity, tmp_path: Path) -> None:
    from hn.errors import InputError

    path = tmp_path / "was_a_file"
    path.write_text("x")
    inputs = store.expand_inputs([path])
    path.unlink()
    os.mkfifo(path)  # between the look and the copy
    with pytest.raises(InputError, match="not a regular file \\(a FIFO\\)"):
        store.add(home, alice.keys, inputs.files, publish=False)
    assert temps(home) == []
