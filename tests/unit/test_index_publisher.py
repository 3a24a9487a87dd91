"""The publisher side of index@2 over a real vault: cursors, pagination, tombstones, ETags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hn.errors import MalformedDocument
from hn.federation.publisher import Publisher
from hn.proto.canonical import loads_canonical
from hn.proto.index import index_root, parse_cursor, verify_slice
from hn.vault import identities, store
from hn.vault.home import Home
from hn.vault.identities import Identity

SOURCE = "http://127.0.0.1:7733"


def add(home: Home, me: Identity, tmp: Path, *names: str, publish: bool = True) -> list[str]:
    paths = []
    for name in names:
        path = tmp / name
        path.write_text(f"content of {name}\n")
        paths.append(path)
    return [e["id"] for e in store.add_files(home, me.keys, paths, publish)]


def pull(pub: Publisher, cursor: str, limit: int = 5000) -> tuple[list[dict[str, Any]], str]:
    """Every slice after ``cursor``, verified; returns the entries and the final cursor."""
    me = identities.load(pub.home)
    entries: list[dict[str, Any]] = []
    for _ in range(1000):
        doc = loads_canonical(pub.slice_bytes(cursor, limit))
        verify_slice(doc, me.history, pub.snapshot().presence)
        assert doc["cursor"] == cursor
        entries.extend(doc["entries"])
        cursor = doc["next_cursor"]
        if not doc["more"]:
            return entries, cursor
    raise AssertionError("slices never ended")


def test_pagination_covers_every_change_once(home: Home, alice: Identity, tmp_path: Path) -> None:
    ids = add(home, alice, tmp_path, *(f"n{i}.txt" for i in range(7)))
    pub = Publisher(home, SOURCE)
    entries, cursor = pull(pub, "0", limit=3)
    assert sorted(e["id"] for e in entries) == sorted(ids)
    assert index_root(sorted(entries, key=lambda e: e["id"].encode())) == pub.snapshot().presence["index"]["root"]
    # caught up: nothing more after the final cursor
    assert pull(pub, cursor) == ([], cursor)


def test_one_change_transfers_one_entry(home: Home, alice: Identity, tmp_path: Path) -> None:
    add(home, alice, tmp_path, *(f"n{i}.txt" for i in range(20)))
    pub = Publisher(home, SOURCE)
    _, cursor = pull(pub, "0")
    new = add(home, alice, tmp_path, "late.txt")
    entries, cursor2 = pull(pub, cursor)
    assert [e["id"] for e in entries] == new
    assert parse_cursor(cursor2) > parse_cursor(cursor)


def test_unpublish_is_a_tombstone(home: Home, alice: Identity, tmp_path: Path) -> None:
    ids = add(home, alice, tmp_path, "a.txt", "b.txt")
    pub = Publisher(home, SOURCE)
    _, cursor = pull(pub, "0")
    store.set_published(home, alice.keys, [ids[0]], False)
    entries, _ = pull(pub, cursor)
    assert entries == [{"type": "tombstone", "id": ids[0], "path": "", "digest": "", "size": 0,
                        "metadata": {"was": "doc"}}]
    assert pub.snapshot().presence["index"]["size"] == 1
    # a consumer starting from scratch sees the tombstone too and ends with one entry
    everything, _ = pull(pub, "0")
    assert {e["id"]: e["type"] for e in everything} == {ids[0]: "tombstone", ids[1]: "doc"}


def test_unpublished_docs_never_appear(home: Home, alice: Identity, tmp_path: Path) -> None:
    add(home, alice, tmp_path, "private.txt", publish=False)
    entries, _ = pull(Publisher(home, SOURCE), "0")
    assert entries == []


def test_etag_moves_only_with_the_index(home: Home, alice: Identity, tmp_path: Path) -> None:
    add(home, alice, tmp_path, "a.txt")
    pub = Publisher(home, SOURCE)
    first = pub.etag()
    assert pub.etag() == first
    assert pub.slice_bytes("0") is pub.slice_bytes("0"), "slices of an unchanged index are cached"
    add(home, alice, tmp_path, "b.txt")
    assert pub.etag() != first


@pytest.mark.parametrize("bad", ["", "-1", "01", "1-", "1-xyz", "9" * 17, "1-" + "A" * 64, "1 ", "../1"])
def test_bad_cursors_refused(home: Home, alice: Identity, bad: str) -> None:
    with pytest.raises(MalformedDocument):
        Publisher(home, SOURCE).slice_bytes(bad)


def test_caught_up_publisher_equals_a_fresh_one(home: Home, alice: Identity, tmp_path: Path) -> None:
    """The node follows the log event by event; the result must equal a rebuild from scratch."""
    from hn.vault import presence

    pub = Publisher(home, SOURCE)
    pub.snapshot()
    ids = add(home, alice, tmp_path, *(f"n{i}.txt" for i in range(30)))
    steps = [
        lambda: store.set_published(home, alice.keys, ids[3:9], False),
        lambda: add(home, alice, tmp_path, "x1.txt", "x2.txt"),
        lambda: store.set_published(home, alice.keys, ids[4:6], True),
        lambda: add(home, alice, tmp_path, "n7.txt"),  # content already known, unpublished: republished
        lambda: add(home, alice, tmp_path, "private.txt", publish=False),
    ]
    for step in steps:
        step()
        presence.refresh(home, alice)  # what the CLI does after each change
        live = pub.snapshot()
        fresh = Publisher(home, SOURCE).snapshot()
        assert (live.keys, live.changes, live.live) == (fresh.keys, fresh.changes, fresh.live)
        assert live.presence == fresh.presence
        entries, _ = pull(pub, "0")
        assert index_root(sorted((e for e in entries if e["type"] != "tombstone"),
                                 key=lambda e: e["id"].encode())) == live.presence["index"]["root"]


def test_publisher_signs_a_presence_when_nobody_did(home: Home, alice: Identity, tmp_path: Path) -> None:
    from hn.vault import presence

    pub = Publisher(home, SOURCE)
    first = pub.snapshot().presence
    add(home, alice, tmp_path, "quiet.txt")  # no presence refresh after it
    snap = pub.snapshot()
    assert snap.presence["seq"] > first["seq"]
    assert snap.presence == presence.current(home, alice.did)
    assert snap.presence["index"]["size"] == 1
    # The node signs from the index it keeps; the catalogue must say exactly the same,
    # or the next CLI refresh would sign again.
    ids = add(home, alice, tmp_path, "a.txt", "b.txt", "c.txt")
    store.set_published(home, alice.keys, ids[1:2], False)
    snap = pub.snapshot()
    assert snap.presence["index"]["size"] == 3
    assert presence.refresh(home, alice) == (snap.presence, False)


def test_an_event_appended_while_the_node_signs_is_not_left_out(
        home: Home, alice: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (the CLI) publishes a document between the node computing its index
    and signing its presence. The presence must not sign the older index: slices built from
    the log would then fail to verify against it at every friend."""
    from hn.vault import presence

    pub = Publisher(home, SOURCE)
    before = pub.snapshot().presence["seq"]
    add(home, alice, tmp_path, "first.txt")  # no presence refresh: the node must sign
    real = presence._sign_if_changed
    raced = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced:  # the other process appends its event just before our lock
            raced.extend(add(home, alice, tmp_path, "second.txt"))
        return real(*args, **kwargs)

    monkeypatch.setattr(presence, "_sign_if_changed", racing)
    snap = pub.snapshot()
    assert raced and snap.presence["index"]["size"] == 2
    assert snap.presence["seq"] == before + 1, "no presence of the older index was signed on the way"
    entries, _ = pull(pub, "0")  # every slice verifies against the presence served with it
    assert {e["id"] for e in entries} >= set(raced)
    assert snap.presence == presence.current(home, alice.did)
    assert presence.refresh(home, alice)[1] is False  # the catalogue agrees: nothing to re-sign


def test_the_cli_reads_the_catalogue_again_when_the_log_moves(
        home: Home, alice: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race from the CLI side: the catalogue was read, then another process
    appended before the lock; the presence signed is the newer index."""
    from hn.vault import presence

    add(home, alice, tmp_path, "first.txt")
    real = presence._sign_if_changed
    raced: list[str] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.extend(add(home, alice, tmp_path, "second.txt"))
        return real(*args, **kwargs)

    monkeypatch.setattr(presence, "_sign_if_changed", racing)
    doc, changed = presence.refresh(home, alice)
    assert changed and doc["index"]["size"] == 2
    entries = store.load_catalog(home).index_entries()
    assert doc["index"]["root"] == index_root(entries)


def test_a_log_that_never_stops_moving_still_gets_a_presence_matching_its_index(
        home: Home, alice: Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every try loses the race: the last one signs the index it has, and the snapshot
    pairs that presence with exactly that index (slices verify against it)."""
    from hn.vault import presence

    pub = Publisher(home, SOURCE)
    pub.snapshot()
    add(home, alice, tmp_path, "first.txt")
    real = presence._sign_if_changed
    added: list[str] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        added.extend(add(home, alice, tmp_path, f"race-{len(added)}.txt"))
        return real(*args, **kwargs)

    monkeypatch.setattr(presence, "_sign_if_changed", racing)
    snap = pub.snapshot()
    monkeypatch.setattr(presence, "_sign_if_changed", real)
    assert len(added) == presence.SIGN_TRIES
    # The presence signs exactly the index the snapshot serves: first.txt and all but the last racer.
    live = sorted(snap.live.values(), key=lambda e: e["id"].encode())
    assert snap.presence["index"]["root"] == index_root(live) and snap.presence["index"]["size"] == len(added)
    newer = pub.snapshot()  # the log moved on: the next request catches up and signs again
    assert newer.presence["index"]["size"] == len(added) + 1
    entries, _ = pull(pub, "0")
    assert {e["id"] for e in entries} >= set(added)
