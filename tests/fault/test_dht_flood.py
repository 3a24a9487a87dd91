"""Joining through a node that was flooded (THREATS.md 4-5): it costs no extra rounds.

"Stays fast" is measured in RPCs and timeouts, never in seconds: two newcomers join at the
same moment, one through the flooded node and one through a quiet one, and the flooded
path must cost about the same. (While a flood fills a node's socket buffer the kernel
drops datagrams for everyone alike; that is outside what the node can change.)
"""

from __future__ import annotations

import asyncio
import os
import socket

import umsgpack

from hn.dht.node import DhtNode
from hn.proto.dht_hint import dht_key
from hn.vault.identities import Identity
from tests.fault.test_dht_hostile import send_all
from tests.integration.test_dht_network import make_hint

FLOOD = 30_000


def flood_datagram(i: int, hint: bytes) -> bytes:
    kind = i % 4
    if kind == 0:
        return os.urandom(1 + (i * 7919) % 1400)
    if kind == 1:
        return b"\x00" + os.urandom(20) + umsgpack.packb(["store", [os.urandom(20), os.urandom(20), hint]])
    if kind == 2:
        # Well-formed requests that would each cost an answer: the rate limit must hold them.
        return b"\x00" + os.urandom(20) + umsgpack.packb(["find_node", [os.urandom(20), os.urandom(20)]])
    return b"\x00" + os.urandom(20) + umsgpack.packb(["ping", [os.urandom(20)]])


async def flood(target: tuple[str, int], hint: bytes) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        return await send_all(sock, target, (flood_datagram(i, hint) for i in range(FLOOD)))
    finally:
        sock.close()


async def join_and_find(through: tuple[str, int], did: str) -> tuple[DhtNode, int, int | None]:
    node = DhtNode()
    await node.listen(0, "127.0.0.1")
    known = await node.bootstrap([through])
    got = await node.get_hints(did)
    return node, known, got.hint.seq if got.hint else None


def handled(node: DhtNode) -> int:
    stats = node.proto.stats
    return sum(stats[k] for k in ("malformed", "limited", "store_limited", "store_refused", "store_ok", "ignored"))


async def test_bootstrap_through_a_flooded_node_costs_no_extra_rounds(
        network: list[DhtNode], alice: Identity) -> None:
    """After 30,000 hostile datagrams the node is as good a way in as an untouched one.

    What a flood could leave behind is what would slow the next newcomer down: made-up
    contacts in the table (each one a timeout for whoever is sent there), dead-peer marks
    on good peers, a full verification queue. So the newcomer through the flooded node
    must need no more requests and meet no more timeouts than one through a quiet node.
    """
    target, quiet = network[0], network[1]
    assert target.address is not None and quiet.address is not None
    assert (await network[5].publish(make_hint(alice, 2))).acks >= 10
    before = len(target.proto.router)
    sent = await flood(target.address, make_hint(alice, 3))
    assert sent > 10_000
    # Let the node work through what reached its socket (bounded wait, no timing assertion).
    last = -1
    for _ in range(100):
        if handled(target) == last:
            break
        last = handled(target)
        await asyncio.sleep(0.05)
    (attacked, known_a, seq_a), (control, known_c, seq_c) = await asyncio.gather(
        join_and_find(target.address, alice.did), join_and_find(quiet.address, alice.did))
    try:
        assert attacked.proto.router.id_at(target.address) == target.node.id
        assert known_a >= 10 and seq_a == 2 and known_c >= 10 and seq_c == 2
        a, c = attacked.proto.stats, control.proto.stats
        assert a["timeouts"] <= c["timeouts"] + 1, (dict(a), dict(c))
        assert a["sent"] <= c["sent"] + 10, (dict(a), dict(c))
        # Nothing from the flood stuck: no made-up contacts, nothing stored from it.
        assert len(target.proto.router) <= before + 2
        assert all(n.id in {m.node.id for m in network} | {attacked.node.id, control.node.id}
                   for n in target.proto.router.contacts())
        held = target.storage.get_hint(dht_key(alice.did))
        assert len(target.storage) <= 1 and (held is None or held.seq == 2)
        flooded = target.proto.stats
        assert flooded["malformed"] > 0 and flooded["limited"] + flooded["store_limited"] > 0
    finally:
        attacked.stop()
        control.stop()
