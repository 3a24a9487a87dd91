"""A relay's storage is capped per peer and for all peers together: a policy that admits
any DID must not let DIDs made by the thousand fill the disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from hn.errors import QuotaExceeded
from hn.relay.store import RelayStore
from hn.vault.home import Home


def did(letter: str) -> str:
    return "did:hn:" + letter * 32


def put(store: RelayStore, who: str, size: int) -> None:
    store.put(who, {"did": who, "pad": "x" * size}, {"did": who}, [{"cursor": "0"}], expires_at=2e9, now=1e9)


def test_the_total_cap_counts_every_other_peer_and_not_the_one_replaced(tmp_path: Path) -> None:
    home = Home(tmp_path / "v")
    home.ensure()
    store = RelayStore(home, cap_bytes=10_000, total_bytes=12_000)
    put(store, did("a"), 5_000)
    put(store, did("b"), 5_000)
    with pytest.raises(QuotaExceeded, match="cap of 12000 bytes for all peers"):
        put(store, did("c"), 5_000)
    assert store.dids() == [did("a"), did("b")]  # nothing of c's was written
    put(store, did("a"), 6_000)  # a's new set replaces its old one: only b's counts against it
    with pytest.raises(QuotaExceeded, match="the cap is 10000"):
        put(store, did("b"), 11_000)
