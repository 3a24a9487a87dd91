"""Time on the DHT (THREATS.md 14, spec/dht_hint@1.md): clock skew, expiry, republishing.

Real UDP nodes on 127.0.0.1 in one process. Skew: each node gets its own wall clock
(``DhtNode(clock=...)``), offset from the test's clock. Expiry and republish: one fake
clock for everyone, installed as hn.proto.timefmt.now. Round-trip timing stays on the real
monotonic clock either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from hn.dht import service
from hn.dht.node import DhtNode
from hn.dht.resolve import resolve
from hn.errors import NotFound
from hn.proto import timefmt
from hn.proto.dht_hint import MAX_SKEW, MAX_TTL, dht_key, parse_hint
from hn.vault import presence
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.integration.test_dht_network import make_hint, running

MIN, HOUR, DAY = 60, 3600, 86400
# Offsets of the nodes' clocks from the test's clock: ±10 min, ±2 h, and one 3 h slow.
OFFSETS = [0, 10 * MIN, -10 * MIN, 2 * HOUR, -2 * HOUR, 0, 10 * MIN, -10 * MIN, 2 * HOUR, -2 * HOUR, 0, -3 * HOUR]


def offset_clock(offset: float) -> Callable[[], float]:
    return lambda: timefmt.now() + offset


async def join_both_ways(nodes: list[DhtNode]) -> None:
    """Through the first node, then again through the last, so every table holds every node."""
    for node in nodes[1:]:
        assert node.address is not None
        await node.bootstrap([nodes[0].address])  # type: ignore[list-item]
    for node in nodes:
        await node.bootstrap([nodes[-1].address])  # type: ignore[list-item]


@pytest.fixture
async def skewed() -> AsyncIterator[list[DhtNode]]:
    async with running([DhtNode(clock=offset_clock(o)) for o in OFFSETS], join_both_ways) as nodes:
        yield nodes


def holders(nodes: list[DhtNode], did: str) -> dict[float, set[int | None]]:
    """Clock offset -> the seqs held for ``did`` by the nodes with that offset (None: nothing)."""
    key = dht_key(did)
    out: dict[float, set[int | None]] = {}
    for offset, node in zip(OFFSETS, nodes):
        held = node.storage.get_hint(key)
        out.setdefault(offset, set()).add(held.seq if held else None)
    return out


async def test_skew_within_the_window_is_accepted_beyond_it_refused(skewed: list[DhtNode], alice: Identity) -> None:
    nodes = skewed
    slow = nodes[-1]  # 3 h behind: sees every hint from a correct clock as issued 3 h ahead
    assert 2 * HOUR < MAX_SKEW < 3 * HOUR
    # k = 20 > 12 nodes: every node is asked to hold the hint.
    published = await nodes[0].publish(make_hint(alice, 1, ttl=DAY))
    assert published.acks + int(published.local) == len(nodes) - 1 and published.refused == 1
    seen = holders(nodes, alice.did)
    assert all(seen[o] == {1} for o in (0, 10 * MIN, -10 * MIN, 2 * HOUR, -2 * HOUR)), seen
    assert seen[-3 * HOUR] == {None} and slow.storage.skewed >= 1 and slow.stats()["skew_refused"] >= 1
    # Resolvers with skewed clocks within the window find it; the slow one does not take it.
    for node in nodes[1:5]:
        got = await node.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 1
    got = await slow.get_hints(alice.did)
    assert got.hint is None and got.invalid >= 1
    # The window bounds the difference between the signer's clock and the holder's. A
    # publisher 2 h fast is within it for every clock at most 5 min slow, not for those
    # 10 min or more slow (2 h 10 min apart); the ones that refuse keep the older hint.
    fast2 = await nodes[3].publish(make_hint(alice, 2, issued=nodes[3].clock(), ttl=DAY))
    seen = holders(nodes, alice.did)
    assert all(seen[o] == {2} for o in (0, 10 * MIN, 2 * HOUR)), seen
    assert seen[-10 * MIN] == {1} and seen[-2 * HOUR] == {1}, seen
    assert fast2.refused == 5 and fast2.acks == 6 and fast2.local
    # A hint from a clock 3 h fast is refused by every clock but the 2 h fast ones, the
    # correct ones included (the publisher here is one of those 2 h fast nodes).
    fast3 = await nodes[3].publish(make_hint(alice, 3, issued=timefmt.now() + 3 * HOUR, ttl=DAY))
    seen = holders(nodes, alice.did)
    assert seen[2 * HOUR] == {3} and all(3 not in seqs for o, seqs in seen.items() if o != 2 * HOUR), seen
    assert fast3.acks == 1 and fast3.refused == len(nodes) - 2
    # Resolvers still pick the highest valid seq they can verify with their own clock.
    for node, want in ((nodes[1], 2), (nodes[2], 1), (nodes[4], 1)):
        got = await node.get_hints(alice.did, quorum=len(nodes))
        assert got.hint is not None and got.hint.seq == want


async def test_ordering_is_by_seq_not_by_time(skewed: list[DhtNode], alice: Identity) -> None:
    nodes = skewed
    now = timefmt.now()
    # Signed by a clock 1 h fast, then by the corrected clock: seq 11 is issued an hour
    # "before" seq 10, and still replaces it.
    assert (await nodes[3].publish(make_hint(alice, 10, issued=now + HOUR, ttl=DAY))).acks == 8
    assert (await nodes[1].publish(make_hint(alice, 11, issued=now, ttl=DAY))).acks == 10
    # A lower seq issued later in time is refused everywhere.
    late = await nodes[2].publish(make_hint(alice, 9, issued=now + 30 * MIN, ttl=DAY))
    assert late.acks == 0 and late.refused == len(nodes) - 1
    seen = holders(nodes, alice.did)
    assert all(seqs == {11} for o, seqs in seen.items() if o != -3 * HOUR), seen
    for node in nodes[:5]:
        got = await node.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 11


async def test_expiry_has_no_grace_but_the_lifetime_covers_the_skew(skewed: list[DhtNode], alice: Identity) -> None:
    """A holder 2 h fast drops a hint 2 h early; the publisher republished long before."""
    nodes = skewed
    short = make_hint(alice, 20, ttl=HOUR)
    await nodes[0].publish(short)
    seen = holders(nodes, alice.did)
    assert seen[2 * HOUR] == {None} and seen[0] == {20} and seen[-2 * HOUR] == {20}
    # The default lifetime and republish fraction leave more margin than the skew window.
    assert (1 - 0.75) * MAX_TTL > 2 * MAX_SKEW


class FakeClock:
    def __init__(self) -> None:
        self.t = timefmt.now()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timefmt, "now", fake)
    return fake


@pytest.fixture
async def network(clock: FakeClock) -> AsyncIterator[list[DhtNode]]:
    async with running([DhtNode() for _ in range(12)], join_both_ways) as nodes:
        yield nodes


def count_holding(nodes: list[DhtNode], raw: bytes) -> int:
    key = parse_hint(raw).key
    return sum(1 for n in nodes if n.storage.get(key) == raw)


async def test_republish_at_three_quarters_then_expiry(
        network: list[DhtNode], clock: FakeClock, home: Home, alice: Identity) -> None:
    presence.refresh(home, alice, url="http://127.0.0.1:9")
    me, publisher, others = alice, network[0], network[1:]
    ttl = 4 * HOUR
    first = await service.republish_if_due(home, publisher, me, 0.75, ttl=ttl)
    assert first is not None and first.acks >= 10
    raw1 = service.own_hint_path(home).read_bytes()
    assert count_holding(others, raw1) >= 10
    # Not yet due at 74% of the lifetime: nothing is signed or sent.
    clock.t += 0.74 * ttl
    assert await service.republish_if_due(home, publisher, me, 0.75, ttl=ttl) is None
    assert service.own_hint_path(home).read_bytes() == raw1
    # Due at 75%: a new hint, higher seq, reaches the holders and replaces the old one.
    clock.t += 0.02 * ttl
    again = await service.republish_if_due(home, publisher, me, 0.75, ttl=ttl)
    assert again is not None and again.acks >= 10
    raw2 = service.own_hint_path(home).read_bytes()
    assert parse_hint(raw2).seq > parse_hint(raw1).seq
    assert count_holding(others, raw2) >= 10 and count_holding(others, raw1) == 0
    got = await others[4].get_hints(me.did)
    assert got.hint is not None and got.hint.raw == raw2
    # The owner goes quiet: past the hint's expiry no holder returns it, resolve finds
    # nothing, and pruning frees the records.
    key = dht_key(me.did)
    assert sum(1 for n in others if key in n.storage.records) >= 10
    clock.t = parse_hint(raw2).expires + 1
    for node in others:
        assert node.storage.get(key) is None
    for node in others[:4]:
        got = await node.get_hints(me.did)
        assert got.hint is None and got.holders == 0
        with pytest.raises(NotFound):
            await resolve(home, me.did, get_hint=node.get_hints, mode="dht", hint_only=True)
    for node in others:
        node.storage.prune()
        assert key not in node.storage.records and len(node.storage) == 0
    # An expired hint offered again is refused, and a fresh one is accepted.
    assert not others[0].storage.offer(key, raw2).accepted
    fresh = await service.republish_if_due(home, publisher, me, 0.75, ttl=ttl)
    assert fresh is not None and fresh.acks >= 10
