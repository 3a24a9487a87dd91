"""Real DHT nodes on 127.0.0.1: publish/resolve, interop with stock kademlia, client mode, state."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from kademlia.crawling import ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node

from hn.dht.config import DhtConfig
from hn.dht.node import DhtNode
from hn.proto import timefmt
from hn.proto.dht_hint import build_hint, dht_key
from hn.vault.identities import Identity

URL = "http://127.0.0.1:9/.well-known/hn/presence"


def make_hint(ident: Identity, seq: int, issued: float | None = None, ttl: int = 3600) -> bytes:
    return build_hint(ident.keys, ident.history, seq=seq, presence_digest="c" * 64, presence_url=URL,
                      issued_at=timefmt.now() if issued is None else issued, ttl=ttl)


async def join_through_first(nodes: list[DhtNode]) -> None:
    """Every node bootstraps through the first, eight at a time."""
    for start in range(1, len(nodes), 8):
        await asyncio.gather(*(n.bootstrap([nodes[0].address]) for n in nodes[start:start + 8]))  # type: ignore[list-item]


@contextlib.asynccontextmanager
async def running(nodes: list[DhtNode],
                  join: Callable[[list[DhtNode]], Awaitable[None]] = join_through_first) -> AsyncIterator[list[DhtNode]]:
    """``nodes`` listening on 127.0.0.1 and joined by ``join``; every one stopped on exit."""
    try:
        for node in nodes:
            await node.listen(0, "127.0.0.1")
        await join(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def dht_network(count: int, config: DhtConfig | None = None) -> contextlib.AbstractAsyncContextManager[list[DhtNode]]:
    """``count`` real nodes on 127.0.0.1, all joined through the first; stopped on exit."""
    return running([DhtNode(config) for _ in range(count)])


@pytest.fixture
async def network() -> AsyncIterator[list[DhtNode]]:
    async with dht_network(24) as nodes:
        yield nodes


async def test_publish_then_resolve_newest(network: list[DhtNode], alice: Identity) -> None:
    first = await network[3].publish(make_hint(alice, 1))
    assert first.acks >= 10 and first.refused == 0
    second = await network[5].publish(make_hint(alice, 2))
    assert second.acks >= 10
    for node in network[6:12]:
        got = await node.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 2
    # An older seq is refused by every node holding seq 2, and publish says so instead of
    # "True". A node near the key that neither earlier publish reached (routing tables differ
    # from node to node) may take it, but resolving still gives the newest.
    again = await network[7].publish(make_hint(alice, 1))
    assert again.refused >= 10
    assert not set(again.holders) & set(second.holders)
    for node in network[12:16]:
        got = await node.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 2


async def test_stock_server_interoperates(network: list[DhtNode], alice: Identity) -> None:
    stock = Server()
    await stock.listen(0, "127.0.0.1")
    try:
        stock_addr = stock.transport.get_extra_info("sockname")[:2]
        joined = await stock.bootstrap([network[0].address])
        assert len(joined) >= 10
        # Our newcomer joins through the stock node only.
        newcomer = DhtNode()
        await newcomer.listen(0, "127.0.0.1")
        try:
            assert await newcomer.bootstrap([tuple(stock_addr)]) >= 10
            await newcomer.publish(make_hint(alice, 3))
            key = dht_key(alice.did)
            target = Node(key)
            nearest = stock.protocol.router.find_neighbors(target)
            value = await ValueSpiderCrawl(stock.protocol, target, nearest, stock.ksize, stock.alpha).find()
            assert isinstance(value, bytes) and json.loads(value)["seq"] == 3
        finally:
            newcomer.stop()
    finally:
        stock.stop()


async def test_client_mode_is_never_added(network: list[DhtNode], alice: Identity) -> None:
    await network[2].publish(make_hint(alice, 4))
    client = DhtNode(client=True)
    await client.listen(0, "127.0.0.1")
    try:
        assert await client.bootstrap([network[0].address]) >= 1
        got = await client.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 4
        await asyncio.sleep(0.3)
        for node in network:
            assert node.proto.router.id_at(client.address) is None
    finally:
        client.stop()


async def test_state_is_json_and_rejoins_from_saved_contacts(network: list[DhtNode], tmp_path: Path,
                                                             alice: Identity) -> None:
    path = tmp_path / "state.json"
    node = DhtNode(state_path=path)
    await node.listen(0, "127.0.0.1")
    await node.bootstrap([network[0].address])
    await node.publish(make_hint(alice, 6))
    node.save_state()
    node.stop()
    saved = json.loads(path.read_bytes())
    assert saved["type"] == "dht_state@1" and len(saved["contacts"]) >= 10 and len(saved["own"]) == 1
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle
    again = DhtNode(state_path=path)
    await again.listen(0, "127.0.0.1")
    try:
        assert again.node.id.hex() == saved["node_id"]
        assert await again.bootstrap([]) >= 10
        assert dht_key(alice.did) in again.own
    finally:
        again.stop()


async def test_dead_nodes_do_not_stall_lookups(alice: Identity) -> None:
    async with dht_network(40) as nodes:
        await nodes[1].publish(make_hint(alice, 7))
        for node in nodes[10:22]:
            node.stop()
        alive = [n for i, n in enumerate(nodes) if not 10 <= i < 22]
        for node in alive[2:12]:
            got = await node.get_hints(alice.did)
            assert got.hint is not None and got.hint.seq == 7
        fresh = make_hint(alice, 8)
        again = await alive[3].publish(fresh)
        assert again.acks >= 12
        # Counted where it matters: live nodes that really hold the new hint.
        key = dht_key(alice.did)
        holding = [n for n in alive if n is not alive[3] and n.storage.get(key) == fresh]
        assert len(holding) >= 12
        assert {f"{n.address[0]}:{n.address[1]}" for n in holding} >= set(again.holders)  # type: ignore[index]
