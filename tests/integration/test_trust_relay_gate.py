"""A relay node gates pushes on reputation: a real signed push to a real node, refused with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hn.proto.canonical import canonical
from hn.trust import links
from hn.vault import identities, policy, shards, store
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import make_person, start_node

relay_push = pytest.importorskip("hn.relay.push")
relay_roster = pytest.importorskip("hn.relay.roster")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Home, Identity, str]]:
    home, me = make_person(tmp_path, "alice")
    node, url = await start_node(home)
    try:
        yield home, me, url
    finally:
        await node.stop()


async def test_low_reputation_push_refused_with_reason(relay: tuple[Home, Identity, str], tmp_path: Path) -> None:
    a_home, alice, url = relay
    b_home, bob = make_person(tmp_path, "bob")
    c_home, carol = make_person(tmp_path, "carol")
    for home, me in ((b_home, bob), (c_home, carol)):
        identities.import_contact(a_home, canonical(me.doc))
        identities.import_contact(home, canonical(alice.doc))
        relay_roster.register(home, me, alice.did, url)
    # One shard alice sealed for bob: real evidence, confidence 0.2.
    note = tmp_path / "note.txt"
    note.write_text("for bob")
    doc = store.add_files(a_home, alice.keys, [note], publish=False)[0]
    shards.share(a_home, alice, doc["id"], bob.did)
    assert links.derive(a_home, alice, bob.did).link["confidence"] == 0.2
    policy.set_policy(a_home, "relay.accept", "reputation.avg_confidence>=0.8")

    [refused] = await relay_push.push(b_home, bob)
    assert refused["ok"] is False and refused["status"] == 403
    assert refused["error"] == (f"relay push refused by policy: reputation.avg_confidence of {bob.did} is 0.2, "
                                "policy relay.accept needs >= 0.8")
    [stranger] = await relay_push.push(c_home, carol)
    assert stranger["status"] == 403 and f"reputation.avg_confidence of {carol.did} is 0," in stranger["error"]

    # alice vouches for bob explicitly (recorded as an override): the same push is accepted.
    links.derive(a_home, alice, bob.did, confidence=0.9)
    [accepted] = await relay_push.push(b_home, bob)
    assert accepted["ok"] is True, accepted
