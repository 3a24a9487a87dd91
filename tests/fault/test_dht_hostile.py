"""Hostile DHT peers (THREATS.md 4-6): poisoned values, malformed contacts, floods, fake ids."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterable

import umsgpack

from hn.dht.node import DhtNode
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.proto.dht_hint import MAX_BYTES, dht_key
from hn.vault.identities import Identity
from tests.integration.test_dht_network import make_hint


class RawPeer(asyncio.DatagramProtocol):
    """A hostile peer speaking the wire format by hand; answers requests with ``answer``."""

    def __init__(self, answer: object = None) -> None:
        self.node_id = os.urandom(20)
        self.answer = answer
        self.replies: dict[bytes, object] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:1] == b"\x01":
            self.replies[data[1:21]] = umsgpack.unpackb(data[21:])
            return
        msg = umsgpack.unpackb(data[21:])
        answer = self.node_id if msg[0] == "ping" else self.answer
        assert self.transport is not None
        self.transport.sendto(b"\x01" + data[1:21] + umsgpack.packb(answer), addr)

    def send(self, addr: tuple[str, int], name: str, *args: object) -> bytes:
        msg_id = os.urandom(20)
        assert self.transport is not None
        self.transport.sendto(b"\x00" + msg_id + umsgpack.packb([name, list(args)]), addr)
        return msg_id

    async def ask(self, addr: tuple[str, int], name: str, *args: object) -> object:
        msg_id = self.send(addr, name, *args)
        for _ in range(200):
            if msg_id in self.replies:
                return self.replies.pop(msg_id)
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to {name}")


async def raw_peer(answer: object = None) -> RawPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(lambda: RawPeer(answer), local_addr=("127.0.0.1", 0))
    return peer


async def test_poisoned_stores_are_refused_and_resolve_returns_the_newest(
        network: list[DhtNode], alice: Identity) -> None:
    key = dht_key(alice.did)
    newest = make_hint(alice, 10)
    assert (await network[1].publish(newest)).acks >= 10
    holder = next(n for n in network if n.storage.get(key) is not None)
    doc = json.loads(newest)
    forged = dict(doc, presence_url="http://evil.example/.well-known/hn/presence")
    expired = make_hint(alice, 11, issued=timefmt.now() - 7200, ttl=60)
    bad = {
        "forged": canonical(forged),
        "expired": expired,
        "old seq": make_hint(alice, 9),
        "oversized": newest + b" " * MAX_BYTES,
        "list": [1, 2, 3],
        "dict": {"value": newest},
        "text": newest.decode(),
        "fork (same seq, other bytes)": make_hint(alice, 10, issued=timefmt.now() - 5),
    }
    peer = await raw_peer()
    try:
        for name, value in bad.items():
            assert await peer.ask(holder.address, "store", peer.node_id, key, value) is False, name
        assert await peer.ask(holder.address, "store", peer.node_id, os.urandom(20), newest) is False
        assert holder.storage.get(key) == newest
    finally:
        assert peer.transport is not None
        peer.transport.close()
    for node in network[5:10]:
        got = await node.get_hints(alice.did)
        assert got.hint is not None and got.hint.raw == newest


async def test_stale_and_garbage_holders_lose_to_the_highest_seq(network: list[DhtNode], alice: Identity) -> None:
    key = dht_key(alice.did)
    stale = make_hint(alice, 1)
    # Hostile peers close to nobody in particular, but known to everyone: they answer
    # every find_value with a stale hint, a list, or malformed contacts.
    answers = [{"value": stale}, {"value": [1, 2]}, [[b"short", "127.0.0.1", 1], ["x", 2, 3], [os.urandom(20), "no-ip", 5]],
               {"value": {"a": 1}}, "garbage"]
    peers = [await raw_peer(a) for a in answers]
    try:
        for node in network:
            for peer in peers:
                assert peer.transport is not None
                addr = peer.transport.get_extra_info("sockname")
                await node.bootstrap_node((addr[0], addr[1]))
        assert (await network[2].publish(make_hint(alice, 5))).acks >= 1
        for node in network[3:12]:
            got = await node.get_hints(alice.did)
            assert got.hint is not None and got.hint.seq == 5
        # A holder that still had the stale copy is brought up to date by resolvers.
        victim = next(n for n in network if n.storage.get(key) is not None)
        victim.storage.records.pop(key)
        victim.storage.offer(key, stale)
        asker = next(n for n in network[3:] if n is not victim)
        # Each resolve repairs the stale holders it heard from; on a busy machine one
        # lookup may time out on the victim, so a few resolves (bounded) must get there.
        for _ in range(5):
            got = await asker.get_hints(alice.did, quorum=len(network) + len(peers))
            assert got.hint is not None and got.hint.seq == 5 and got.restored >= 1
            await asker.settle()
            held = victim.storage.get_hint(key)
            if held is not None and held.seq == 5:
                break
        assert held is not None and held.seq == 5
    finally:
        for peer in peers:
            assert peer.transport is not None
            peer.transport.close()


async def send_all(sock: socket.socket, address: tuple[str, int], datagrams: Iterable[bytes]) -> int:
    """Send as fast as the socket takes them, yielding to the nodes every 50 datagrams;
    returns how many the socket took (a full buffer drops the datagram)."""
    sent = 0
    for i, data in enumerate(datagrams):
        try:
            sock.sendto(data, address)
            sent += 1
        except BlockingIOError:
            await asyncio.sleep(0.001)
        if i % 50 == 0:
            await asyncio.sleep(0)
    return sent


async def test_random_datagram_flood_and_fake_id_stores(network: list[DhtNode], alice: Identity) -> None:
    target = network[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    attacker = sock.getsockname()
    try:
        # Random bytes, a third of them starting like a request.
        await send_all(sock, target.address, ((b"\x00" if i % 3 == 0 else b"") + os.urandom(1 + (i * 7919) % 1500)
                                              for i in range(20_000)))
        hint = make_hint(alice, 3)
        await send_all(sock, target.address, (b"\x00" + os.urandom(20) + umsgpack.packb(
            ["store", [os.urandom(20), os.urandom(20), hint]]) for _ in range(20_000)))
        await asyncio.sleep(0.5)
    finally:
        sock.close()
    # One source address holds at most one routing entry; nothing unverified got in.
    contacts = target.proto.router.contacts()
    assert target.proto.router.id_at(attacker) is None
    addresses = [(n.ip, n.port) for n in contacts]
    assert len(addresses) == len(set(addresses)) and len(contacts) < len(network)
    assert len(target.storage) == 0
    # The node still works: a newcomer joins through it and finds a published hint.
    assert (await network[3].publish(make_hint(alice, 4))).acks >= 10
    newcomer = DhtNode()
    await newcomer.listen(0, "127.0.0.1")
    try:
        assert await newcomer.bootstrap([target.address]) >= 10
        got = await newcomer.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 4
    finally:
        newcomer.stop()
    assert target.proto.stats["malformed"] > 0
    assert target.proto.stats["limited"] + target.proto.stats["store_limited"] > 0
