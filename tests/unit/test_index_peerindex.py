"""The consumer's incremental Merkle tree must always equal a from-scratch RFC 6962 root."""

from __future__ import annotations

from typing import Any
from unittest import mock

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from hn.federation.peerindex import PeerIndex
from hn.proto import merkle


def hid(n: int) -> str:
    return blake3.blake3(b"id%d" % n).hexdigest()


def hdig(n: int) -> str:
    return blake3.blake3(b"digest%d" % n).hexdigest()


def reference(held: dict[str, str]) -> str:
    return merkle.root([bytes.fromhex(held[i]) for i in sorted(held, key=lambda x: x.encode())]).hex()


changes_st = st.lists(st.tuples(st.integers(0, 300), st.one_of(st.none(), st.integers(0, 10_000))), max_size=40)


@settings(max_examples=300, deadline=None)
@given(start=st.sets(st.integers(0, 300), max_size=200), rounds=st.lists(changes_st, max_size=5),
       always_incremental=st.booleans())
def test_incremental_root_matches_full_root(start: set[int], rounds: list[list[tuple[int, Any]]],
                                            always_incremental: bool) -> None:
    with mock.patch("hn.federation.peerindex.REBUILD_FRACTION", 0 if always_incremental else 8):
        check_rounds(start, rounds)


def check_rounds(start: set[int], rounds: list[list[tuple[int, Any]]]) -> None:
    held = {hid(n): hdig(n) for n in start}
    index = PeerIndex.build(held.items())
    assert index.root == reference(held) and index.size == len(held)
    for changes in rounds:
        staged: dict[str, str | None] = {}
        for n, value in changes:
            staged[hid(n)] = None if value is None else hdig(value)
        before = (index.root, list(index.ids))
        new = index.apply(staged)
        assert (index.root, index.ids) == before, "apply must not change the original"
        for entry_id, digest in staged.items():
            if digest is None:
                held.pop(entry_id, None)
            else:
                held[entry_id] = digest
        assert new.root == reference(held) and new.size == len(held)
        index = new


def test_single_insert_into_a_large_index() -> None:
    held = {hid(n): hdig(n) for n in range(5000)}
    index = PeerIndex.build(held.items())
    for extra in range(5000, 5010):
        index = index.apply({hid(extra): hdig(extra)})
        held[hid(extra)] = hdig(extra)
    assert index.root == reference(held)
    assert PeerIndex.build([]).root == merkle.EMPTY_ROOT.hex()
