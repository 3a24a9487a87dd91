from __future__ import annotations

from pathlib import Path

import pytest

from hn.vault import identities, store
from hn.vault.home import Home
from hn.vault.verify import verify_vault


def test_large_add_is_split_into_bounded_events(home: Home, alice: identities.Identity, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "ADD_BATCH", 7)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(20):
        (folder / f"f{i:02d}.txt").write_text(f"file {i}\n")
    before = len(home.event_files())
    added = store.add_files(home, alice.keys, [folder], publish=True)
    assert len(added) == 20
    adds = [e for e in home.events() if e["kind"] == "doc.add"]
    assert [len(e["data"]["items"]) for e in adds] == [7, 7, 6]
    assert len(home.event_files()) == before + 3
    assert len(store.load_catalog(home).index_entries()) == 20
    assert verify_vault(home).ok
