"""Sybil / eclipse on lookups (THREATS.md 6): a third of the nodes hostile, more of them dead.

The hostile nodes are real UDP nodes of the network whose request handling is replaced by
the attack itself; everything else (routing tables, lookups, verification) is the real code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import umsgpack

from hn.dht.lookup import lookup
from hn.dht.node import DhtNode
from hn.dht.protocol import HnProtocol
from hn.proto.canonical import canonical
from hn.proto.dht_hint import dht_key
from hn.vault.identities import Identity
from tests.integration.test_dht_network import make_hint

HONEST, HOSTILE, DEAD = 18, 12, 6
KINDS = ("liar", "sink", "stale", "forged", "mute", "eclipse")


class HostileProtocol(HnProtocol):
    """Answers pings like a good node (so it is kept in tables), then lies about everything else.

    liar:    contacts with made-up ids at ports where nobody listens
    sink:    acknowledges every STORE and keeps nothing; never has a value
    stale:   answers find_value with a valid hint of an old seq
    forged:  answers find_value with a high-seq hint whose signature does not verify
    mute:    drops every request but ping
    eclipse: points every lookup at the other hostile nodes, under made-up ids right next
             to the target, so that they look like the closest nodes to any key
    """

    kind = "mute"
    bait: dict[str, Any] = {}
    crowd: list[tuple[str, int]] = []

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 22 or data[0] != 0:
            super()._datagram(data, addr)
            return
        try:
            name, args = umsgpack.unpackb(data[21:])
        except Exception:
            return
        if name == "ping":
            super()._datagram(data, addr)
            return
        answer: Any
        kind = self.kind
        if kind == "mute":
            return
        if name == "store":
            answer = True
        elif name == "find_value" and kind in ("stale", "forged"):
            answer = {"value": self.bait[kind]}
        elif kind == "liar":
            answer = [[os.urandom(20), "127.0.0.1", 9] for _ in range(8)] + [[b"x", "no", -1]]
        else:
            target = args[1] if len(args) > 1 and isinstance(args[1], bytes) and len(args[1]) == 20 else os.urandom(20)
            answer = [[near(target, i), ip, port] for i, (ip, port) in enumerate(self.crowd) if (ip, port) != self.me]
        self._reply(data[1:21], answer, addr)

    @property
    def me(self) -> tuple[str, int] | None:
        if self.transport is None:
            return None
        sock = self.transport.get_extra_info("sockname")
        return (str(sock[0]), int(sock[1]))


def near(target: bytes, i: int) -> bytes:
    """An id that differs from ``target`` only in its last byte: closer than any real node."""
    return target[:19] + bytes([target[19] ^ (i + 1)])


class HostileNode(DhtNode):
    def __init__(self, kind: str, bait: dict[str, Any], crowd: list[tuple[str, int]]) -> None:
        super().__init__()
        self.kind, self.bait, self.crowd = kind, bait, crowd

    def _create_protocol(self) -> HnProtocol:
        proto = HostileProtocol(self.node, self.storage, self.config, client=False)
        proto.kind, proto.bait, proto.crowd = self.kind, self.bait, self.crowd
        return proto


@pytest.fixture
async def attacked(alice: Identity) -> AsyncIterator[tuple[list[DhtNode], list[DhtNode], dict[str, Any]]]:
    """18 honest nodes, 12 hostile (two of each kind) and 6 that die after joining."""
    stale = make_hint(alice, 1)
    forged = dict(json.loads(make_hint(alice, 2)), seq=10**9, presence_url="http://127.0.0.1:1/evil")
    bait: dict[str, Any] = {"stale": stale, "forged": canonical(forged)}
    crowd: list[tuple[str, int]] = []
    nodes: list[DhtNode] = []
    try:
        for i in range(HONEST + HOSTILE + DEAD):
            node: DhtNode = DhtNode() if i % 3 != 1 or i // 3 >= HOSTILE else HostileNode(KINDS[(i // 3) % 6], bait, crowd)
            await node.listen(0, "127.0.0.1")
            nodes.append(node)
            if isinstance(node, HostileNode):
                assert node.address is not None
                crowd.append(node.address)
        for node in nodes[1:]:
            await node.bootstrap([nodes[0].address])
        # A second round, so early joiners also learn the late ones (hostile included).
        for node in nodes:
            if not isinstance(node, HostileNode):
                await node.bootstrap([nodes[-1].address])
        hostile = [n for n in nodes if isinstance(n, HostileNode)]
        honest = [n for n in nodes if not isinstance(n, HostileNode)]
        assert len(hostile) == HOSTILE
        yield honest, hostile, bait
    finally:
        for node in nodes:
            node.stop()


async def test_lookups_return_the_newest_valid_hint_under_attack(
        attacked: tuple[list[DhtNode], list[DhtNode], dict[str, Any]], alice: Identity) -> None:
    honest, hostile, _ = attacked
    # Every honest node knows some hostile ones: the attack is in everyone's tables.
    assert all(any(h.proto.router.id_at(b.address) is not None for b in hostile)  # type: ignore[arg-type]
               for h in honest)
    newest = make_hint(alice, 3)
    dead = honest[-DEAD:]
    alive = honest[:-DEAD]
    published = await alive[0].publish(newest)
    assert published.acks >= 5
    for node in dead:
        node.stop()
    key = dht_key(alice.did)
    assert sum(1 for n in alive if n.storage.get(key) == newest) >= 3
    for node in alive[1:]:
        got = await node.get_hints(alice.did)
        assert got.hint is not None and got.hint.raw == newest, (got.holders, got.invalid, got.queried)
    # A client whose bootstrap list is all hostile but one honest node still finds it. (With
    # no honest bootstrap peer at all a newcomer is eclipsed; then the signed cache, the
    # roster and relays answer, not the DHT.)
    client = DhtNode(client=True)
    await client.listen(0, "127.0.0.1")
    try:
        seeds = [h.address for h in hostile if h.address is not None] + [alive[-1].address]
        assert await client.bootstrap(seeds) >= 1  # type: ignore[arg-type]
        got = await client.get_hints(alice.did)
        assert got.hint is not None and got.hint.raw == newest
    finally:
        client.stop()


async def test_made_up_ids_never_become_the_closest_nodes(
        attacked: tuple[list[DhtNode], list[DhtNode], dict[str, Any]], alice: Identity) -> None:
    honest, hostile, _ = attacked
    alive = honest[:-DEAD]
    real = {n.node.id for n in honest} | {n.node.id for n in hostile}
    key = dht_key(alice.did)
    for node in alive[:6]:
        found = await lookup(node.proto, key, find_value=False, deadline=time.monotonic() + 4)
        assert found.closest and all(n.id in real for n in found.closest)
        assert sum(1 for n in found.closest if n.id in {h.node.id for h in honest}) >= 8
    # Claims checked on the wire: the eclipse nodes' made-up ids were asked and refused,
    # and none entered a routing table.
    assert sum(n.proto.stats["false_ids"] for n in alive) >= 1
    for node in alive:
        assert all(n.id in real for n in node.proto.router.contacts())
    published = await alive[1].publish(make_hint(alice, 4))
    honest_holders = [n for n in alive if n.storage.get(key) is not None]
    assert len(honest_holders) >= min(8, published.acks)
