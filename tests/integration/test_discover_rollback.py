"""The resolver never goes back below the hint and presence seqs it has already verified
(DESIGN: receivers keep the highest seq seen and refuse older ones)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hn.dht import cache, service
from hn.dht.node import DhtNode
from hn.dht.resolve import resolve
from hn.errors import HnError, RollbackError
from hn.proto import timefmt
from hn.proto.canonical import doc_digest
from hn.proto.dht_hint import build_hint, parse_hint
from hn.vault import presence
from tests.support import make_person, start_node


@contextlib.asynccontextmanager
async def holding(raw: bytes) -> AsyncIterator[DhtNode]:
    """A one-node DHT that holds ``raw`` only."""
    node = DhtNode()
    await node.listen(0, "127.0.0.1")
    try:
        hint = parse_hint(raw)
        assert node.storage.offer(hint.key, raw).accepted
        yield node
    finally:
        node.stop()


async def test_an_older_hint_from_the_dht_never_replaces_the_cached_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, me = make_person(tmp_path, "alice")
    node, _ = await start_node(home)
    try:
        old = parse_hint(service.sign_own_hint(home, me))
        new = parse_hint(service.sign_own_hint(home, me, ttl=600))
        assert new.seq > old.seq
        reader, _ = make_person(tmp_path, "reader")
        async with holding(new.raw) as fresh, holding(old.raw) as stale:
            got = await resolve(reader, me.did, get_hint=fresh.get_hints, mode="dht")
            assert got.hint is not None and got.hint.seq == new.seq
            # A DHT that offers only the older hint: the newer cached one, still valid, is followed.
            got = await resolve(reader, me.did, get_hint=stale.get_hints, mode="dht")
            assert got.hint is not None and got.hint.seq == new.seq, got.as_dict()
            assert f"only seq {old.seq}" in got.detail
            assert cache.load(reader, me.did)[0].seq == new.seq
            # Once the newer hint has expired, the older one is refused outright.
            later = timefmt.now() + 3600
            monkeypatch.setattr(timefmt, "now", lambda: later)
            with pytest.raises(HnError) as info:
                await resolve(reader, me.did, get_hint=stale.get_hints, mode="dht")
            assert f"seq {old.seq}" in info.value.message and "older than" in info.value.message
            assert cache.load(reader, me.did)[0].seq == new.seq
    finally:
        await node.stop()


def test_the_cache_refuses_an_older_hint_or_presence(tmp_path: Path) -> None:
    home, me = make_person(tmp_path, "alice")
    url = "http://127.0.0.1:9"
    first, _ = presence.refresh(home, me, force=True, url=url)
    second, _ = presence.refresh(home, me, force=True, url=url)
    assert second["seq"] > first["seq"]

    def hint_for(doc: dict[str, object], seq: int) -> bytes:
        return build_hint(me.keys, me.history, seq=seq, presence_digest=doc_digest(doc),
                          presence_url=url + "/.well-known/hn/presence", issued_at=timefmt.now(), ttl=3600)

    reader, _ = make_person(tmp_path, "reader")
    cache.store(reader, parse_hint(hint_for(second, 5)), second)
    with pytest.raises(RollbackError, match="dht_hint@1 seq 4"):
        cache.store(reader, parse_hint(hint_for(second, 4)), second)
    # A newer hint naming an older presence: the presence would go back, refused too.
    with pytest.raises(RollbackError, match=f"presence@2 seq {first['seq']}"):
        cache.store(reader, parse_hint(hint_for(first, 6)), first)
    hint, kept, _ = cache.load(reader, me.did)
    assert hint.seq == 5 and kept["seq"] == second["seq"]
