"""THREATS.md 3: two presences of bob with one seq, each delivered through one of his two
relays (real nodes); a reader that meets them in either order has the same outcome: the
first is accepted, the second refused as a fork, and both signed documents kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hn.federation import service
from hn.node.httpsig import sign_request
from hn.proto import timefmt
from hn.proto.canonical import canonical, loads_canonical
from hn.proto.index import build_slice
from hn.proto.signed import sign_document
from hn.relay import roster as relay_roster
from hn.relay.push import bundle
from hn.vault import identities, presence
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import free_port, make_person, start_node

pytestmark = pytest.mark.timeout(120)


async def push(relay_url: str, bob: Identity, body: dict[str, Any]) -> int:
    target = f"{relay_url}/relay/{bob.did}/presence"
    raw = canonical(body)
    async with aiohttp.ClientSession() as session, \
            session.post(target, data=raw, headers=sign_request(bob.keys, "POST", target, raw)) as resp:
        return resp.status


async def relay_node(home: Home, port: int) -> Any:
    node, _ = await start_node(home, listen=f"127.0.0.1:{port}", public_url=f"http://127.0.0.1:{port}")
    return node


def evidence(home: Home) -> list[bytes]:
    return sorted(p.read_bytes() for p in home.path("sync", "forks").rglob("presence@2-*.json"))


async def test_equivocation_through_two_relays_is_a_fork_in_either_order(tmp_path: Path) -> None:
    a_home, alice = make_person(tmp_path, "alice")
    d_home, dora = make_person(tmp_path, "dora")
    b_home, bob = make_person(tmp_path, "bob")
    readers = [make_person(tmp_path, name)[0] for name in ("carol", "erin")]
    for relay_home, relay in ((a_home, alice), (d_home, dora)):
        identities.import_contact(relay_home, canonical(bob.doc))
        identities.import_contact(b_home, canonical(relay.doc))
    a_port, d_port = free_port(), free_port()
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"
    alice_node, dora_node = await relay_node(a_home, a_port), await relay_node(d_home, d_port)
    bob_node, b_url = await start_node(b_home)
    try:
        relay_roster.register(b_home, bob, alice.did, a_url)
        relay_roster.register(b_home, bob, dora.did, d_url)
        for home in readers:  # both read bob's presence, which names his two relays, from his node
            await service.add(home, bob.did, b_url)
            assert (await service.refresh(home))[0]["ok"] is True
        await bob_node.stop()
        presence.refresh(b_home, bob, force=True)
        whole = loads_canonical(bundle(b_home, bob))
        signed = whole["presence"]
        forked = sign_document({**signed, "url": signed["url"] + "/elsewhere"}, bob.keys)
        assert forked["seq"] == signed["seq"] and forked != signed
        # Slices name the presence they go with: the forked one gets its own, signed by bob too.
        slices = [build_slice(bob.keys, item["source"], forked, item["cursor"], item["next_cursor"], item["more"],
                              item["entries"], timefmt.now_iso()) for item in whole["slices"]]
        assert await push(a_url, bob, whole) == 200  # each relay sees one of them only
        assert await push(d_url, bob, {**whole, "presence": forked, "slices": slices}) == 200

        carol, erin = readers
        # Which relay a reader asks first follows the order of bob's presence, so each
        # reader's first copy is chosen by having only that relay up.
        # carol meets alice's copy first (dora down), then (alice down) dora's
        await dora_node.stop()
        first = (await service.refresh(carol))[0]
        assert first["ok"] is True and first["source"] == f"relay:{alice.did}", first
        dora_node = await relay_node(d_home, d_port)
        await alice_node.stop()
        second = (await service.refresh(carol))[0]
        # erin meets dora's copy first (alice down), then (dora down) alice's
        other_first = (await service.refresh(erin))[0]
        assert other_first["ok"] is True and other_first["source"] == f"relay:{dora.did}", other_first
        alice_node = await relay_node(a_home, a_port)
        await dora_node.stop()
        other_second = (await service.refresh(erin))[0]
        for result in (second, other_second):
            assert result["ok"] is False and "fork" in result["error"], result
        for home in readers:
            assert evidence(home) == sorted([canonical(signed), canonical(forked)])
    finally:
        for node in (alice_node, dora_node, bob_node):
            await node.stop()
        await asyncio.sleep(0)
