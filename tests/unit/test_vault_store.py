from __future__ import annotations

from pathlib import Path

import blake3
import pytest

from hn.errors import InputError, NotFound
from hn.proto import merkle
from hn.vault import store
from hn.vault.home import Home
from hn.vault.identities import Identity


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_add_stores_bytes_under_their_blake3(home: Home, alice: Identity, tmp_path: Path) -> None:
    data = b"\x00binary\xff" * 100
    [entry] = store.add_files(home, alice.keys, [write(tmp_path, "p.jpg", data)], publish=False)
    digest = blake3.blake3(data).hexdigest()
    assert entry["id"] == entry["digest"] == digest and entry["size"] == len(data)
    assert entry["media_type"] == "image/jpeg" and entry["published"] is False
    assert store.object_path(home, digest).read_bytes() == data
    assert home.head()[0] == 2 and list(home.events())[-1]["kind"] == "doc.add"
    # adding the same bytes again keeps one object and one entry
    store.add_files(home, alice.keys, [write(tmp_path, "copy.jpg", data)], publish=False)
    assert len(store.load_catalog(home).entries) == 1


def test_folders_and_missing_files(home: Home, alice: Identity, tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    (folder / "sub").mkdir(parents=True)
    write(folder, "a.txt", b"a")
    write(folder / "sub", "b.txt", b"b")
    assert len(store.add_files(home, alice.keys, [folder], publish=True)) == 2
    before = home.head()
    with pytest.raises(InputError, match="no such file"):
        store.add_files(home, alice.keys, [tmp_path / "nope"], publish=True)
    assert home.head() == before


def test_index_is_published_entries_in_id_order(home: Home, alice: Identity, tmp_path: Path) -> None:
    paths = [write(tmp_path, f"{i}.txt", bytes([i]) * 10) for i in range(5)]
    added = store.add_files(home, alice.keys, paths, publish=True)
    catalog = store.load_catalog(home)
    entries = catalog.index_entries()
    ids = sorted(e["id"] for e in added)
    assert [e["id"] for e in entries] == ids
    assert store.index_root(entries) == merkle.root([bytes.fromhex(i) for i in ids]).hex()
    store.set_published(home, alice.keys, [ids[0][:10]], False)
    after = store.load_catalog(home)
    assert [e["id"] for e in after.index_entries()] == ids[1:]
    assert after.index_cursor() == home.head()[0]


def test_resolve_id_prefixes(home: Home, alice: Identity, tmp_path: Path) -> None:
    [entry] = store.add_files(home, alice.keys, [write(tmp_path, "x.txt", b"x")], publish=False)
    catalog = store.load_catalog(home)
    assert store.resolve_id(catalog, entry["id"][:6].upper()) == entry
    with pytest.raises(NotFound, match="at least 6"):
        store.resolve_id(catalog, entry["id"][:5])
    with pytest.raises(NotFound):
        store.resolve_id(catalog, "ffffffffffff" if not entry["id"].startswith("ff") else "eeeeeeeeeeee")


def test_catalog_is_a_cache_of_the_log(home: Home, alice: Identity, tmp_path: Path) -> None:
    store.add_files(home, alice.keys, [write(tmp_path, "x.txt", b"x")], publish=True)
    expected = store.replay(home).entries
    cache = home.path(*store.CATALOG)
    cache.write_bytes(b"garbage")
    assert store.load_catalog(home).entries == expected
    cache.unlink()
    assert store.load_catalog(home).entries == expected
