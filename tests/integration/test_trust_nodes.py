"""Trust over real nodes: evidence from a two-node exchange, exposure of reputation@1, links to friends.

Three real nodes (aiohttp servers on 127.0.0.1, ports chosen at run time) run in this
process; requests between them are real HTTP with real RFC 9421 signatures.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from hn.errors import VerificationError
from hn.federation import service
from hn.node.app import Node
from hn.node.httpsig import sign_request
from hn.proto import trust as proto
from hn.proto.canonical import canonical, loads_canonical
from hn.trust import evidence, links, remote, reputation, selectors
from hn.vault import identities, policy, presence, shards, store
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import make_person, start_node

pytestmark = pytest.mark.timeout(120)


@dataclass
class Person:
    name: str
    home: Home
    me: Identity
    node: Node | None = None
    url: str = ""


def _person(root: Path, name: str) -> Person:
    return Person(name, *make_person(root, name))


async def _start(p: Person) -> None:
    p.node, p.url = await start_node(p.home, mirror=False)


def _add_doc(p: Person, tmp: Path, text: str, publish: bool = True) -> str:
    src = tmp / f"{p.name}-{abs(hash(text))}.txt"
    src.write_text(text)
    entry = store.add_files(p.home, p.me.keys, [src], publish)[0]
    presence.refresh(p.home, p.me)
    return str(entry["id"])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[dict[str, Person]]:
    people = {n: _person(tmp_path, n) for n in ("alice", "bob", "carol", "dave")}
    for name in ("alice", "bob", "carol"):
        await _start(people[name])
    alice, bob, carol, dave = (people[n] for n in ("alice", "bob", "carol", "dave"))
    # alice and bob are friends both ways; carol is alice's friend; dave is only a pinned contact.
    await service.add(alice.home, bob.me.did, bob.url)
    await service.add(bob.home, alice.me.did, alice.url)
    await service.add(alice.home, carol.me.did, carol.url)
    await service.add(carol.home, alice.me.did, alice.url)
    identities.import_contact(alice.home, canonical(dave.me.doc))
    identities.import_contact(dave.home, canonical(alice.me.doc))
    try:
        yield people
    finally:
        for p in people.values():
            if p.node is not None:
                await p.node.stop()


async def _exchange(world: dict[str, Person], tmp: Path) -> dict[str, str]:
    """bob seals a document for alice, alice mirrors bob's node and opens it; alice seals one for bob."""
    alice, bob = world["alice"], world["bob"]
    bob_doc = _add_doc(bob, tmp, "bob's public note")
    shared = shards.share(bob.home, bob.me, bob_doc, alice.me.did)
    presence.refresh(bob.home, bob.me)
    results = await service.refresh(alice.home, mirror=True, only=bob.me.did)
    assert results[0]["ok"], results
    mirrored = shards.find_shard(alice.home, shared["id"])
    opened = shards.open_shard(alice.home, alice.me, mirrored, tmp / "opened.txt")
    assert opened["doc_digest"] == bob_doc
    alice_doc = _add_doc(alice, tmp, "alice's note for bob", publish=False)
    sent = shards.share(alice.home, alice.me, alice_doc, bob.me.did)
    return {"in": shared["id"], "out": sent["id"], "bob_doc": bob_doc}


async def _get(url: str, signer: Identity | None = None) -> tuple[int, bytes]:
    headers = sign_request(signer.keys, "GET", url, b"") if signer else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url, headers=headers) as resp:
            return resp.status, await resp.read()


async def test_derive_from_a_real_exchange_and_determinism(world: dict[str, Person], tmp_path: Path) -> None:
    alice, bob = world["alice"], world["bob"]
    ids = await _exchange(world, tmp_path)
    found = {i.id for i in evidence.collect(alice.home, bob.me.did)}
    tail = bob.me.did[7:]
    assert f"shard:{ids['in']}" in found and f"shard:{ids['out']}" in found
    assert f"mirror:{tail}/doc/{ids['bob_doc']}" in found
    # The mirrored shard is the same exchange as the opened one: counted once.
    assert f"mirror:{tail}/shard/{ids['in']}" not in found

    first = links.derive(alice.home, alice.me, bob.me.did)
    assert first.link["evidence_kinds"] == {"mirror": 1, "shard": 2}
    assert 0 < first.link["confidence"] < 1
    assert first.link["confidence"] == proto.derive_confidence(first.evidence)

    second = links.derive(alice.home, alice.me, bob.me.did)
    strip = ("issued_at", "signature")
    assert canonical({k: v for k, v in first.link.items() if k not in strip}) == \
        canonical({k: v for k, v in second.link.items() if k not in strip})

    doc1, changed1, _ = reputation.compute(alice.home, alice.me, bob.me.did)
    doc2, changed2, _ = reputation.compute(alice.home, alice.me, bob.me.did)
    assert changed1 and not changed2
    assert canonical(doc1) == canonical(doc2)
    assert doc1["aggregate"]["count"] == 1
    assert doc1["links"][0]["id"] == f"trust_link:{first.link['id']}"


async def test_exposure_denied_per_target_and_wildcard(world: dict[str, Person], tmp_path: Path) -> None:
    alice, bob, carol, dave = (world[n] for n in ("alice", "bob", "carol", "dave"))
    await _exchange(world, tmp_path)
    links.derive(alice.home, alice.me, bob.me.did)
    reputation.publish(alice.home, alice.me, bob.me.did)
    url = f"{alice.url}/trust/{bob.me.did}"
    nothing = f"{alice.url}/trust/{dave.me.did}"

    # Default deny: everyone gets the same 403, whether or not a reputation exists.
    for target in (url, nothing):
        for who in (None, carol.me, dave.me):
            status, body = await _get(target, who)
            assert status == 403, (target, who)
            assert json.loads(body)["error"] == "forbidden"

    # Per target: carol (signed) may, dave and anonymous may not.
    policy.set_policy(alice.home, "trust.exposure", "allow", carol.me.did)
    status, body = await _get(url, carol.me)
    assert status == 200
    doc = proto.verify_reputation(loads_canonical(body), identities.require_history(carol.home, alice.me.did))
    assert doc["target"] == bob.me.did and doc["aggregate"]["count"] == 1
    assert (await _get(url, dave.me))[0] == 403
    assert (await _get(url))[0] == 403
    # An allowed requester learns that nothing is published about dave.
    assert (await _get(nothing, carol.me))[0] == 404

    # Wildcard: anyone, signed or not.
    policy.set_policy(alice.home, "trust.exposure", "allow", "*")
    assert (await _get(url))[0] == 200
    assert (await _get(url, dave.me))[0] == 200
    # A per-target deny still beats the wildcard.
    policy.set_policy(alice.home, "trust.exposure", "deny", dave.me.did)
    assert (await _get(url, dave.me))[0] == 403

    # The CLI-side fetch verifies the signature and the seq.
    fetched = await remote.fetch_reputation(carol.home, carol.me, alice.url, alice.me.did, bob.me.did)
    assert fetched["seq"] == doc["seq"]


async def test_links_friends_only_without_evidence(world: dict[str, Person], tmp_path: Path) -> None:
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    await _exchange(world, tmp_path)
    links.derive(alice.home, alice.me, bob.me.did, context="micropay")
    url = f"{alice.url}/trust/{alice.me.did}/links"
    assert (await _get(url))[0] == 401
    outsider = _person(tmp_path, "eve")
    assert (await _get(url, outsider.me))[0] == 401

    status, body = await _get(url, carol.me)
    assert status == 200
    answer = loads_canonical(body)
    assert [h["to"] for h in answer["links"]] == [bob.me.did]
    header = answer["links"][0]
    assert "evidence" not in header and "based_on" not in header
    proto.verify_link(header, identities.require_history(carol.home, alice.me.did))

    # carol pulls it into her graph; the edge shows as a friend's.
    results = await remote.fetch_all(carol.home, carol.me)
    assert results == [{"did": alice.me.did, "ok": True, "error": None, "links": 1}]
    from hn.trust import graph

    picture = graph.build(carol.home, carol.me)
    assert [(e["from"], e["to"], e["source"]) for e in picture["edges"]] == [(alice.me.did, bob.me.did, "friend")]
    assert 'style=dashed' in graph.to_dot(picture)
    # ...and it counts in carol's aggregate about bob.
    assert reputation.aggregate_about(carol.home, carol.me, bob.me.did)["count"] == 1


async def test_tampered_link_refused_everywhere(world: dict[str, Person], tmp_path: Path) -> None:
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    await _exchange(world, tmp_path)
    stored = links.derive(alice.home, alice.me, bob.me.did)
    path = links.link_path(alice.home, alice.me, stored.link)
    raw = loads_canonical(path.read_bytes())
    raw["link"]["confidence"] = 0.99
    raw["link"]["derived_confidence"] = 0.99
    path.write_bytes(canonical(raw))
    with pytest.raises(VerificationError, match="refused"):
        links.my_links(alice.home, alice.me)
    # The node never serves it, and it does not count in an aggregate.
    status, body = await _get(f"{alice.url}/trust/{alice.me.did}/links", carol.me)
    assert status == 200 and loads_canonical(body)["links"] == []
    doc, _, refused = reputation.compute(alice.home, alice.me, bob.me.did)
    assert doc["aggregate"]["count"] == 0 and refused

    # A friend's cached header edited on disk is refused when read back.
    cache = links.friend_cache(carol.home, alice.me.did)
    header = dict(stored.link, confidence=1)
    links.save_friend_links(carol.home, alice.me.did, [header])
    assert cache.exists()
    kept, problems = links.friend_links(carol.home, carol.me)
    assert kept == [] and "refused" in problems[0]


async def test_relay_accept_selector_refuses_low_reputation(world: dict[str, Person], tmp_path: Path) -> None:
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    await _exchange(world, tmp_path)
    links.derive(alice.home, alice.me, bob.me.did)
    policy.set_policy(alice.home, "relay.accept", "reputation.avg_confidence>=0.8")
    ok, reason = selectors.allows(alice.home, "relay.accept", bob.me.did)
    assert not ok
    assert reason.startswith(f"reputation.avg_confidence of {bob.me.did} is 0.")
    assert "needs >= 0.8" in reason
    # carol has no links at all: refused too, with count 0 visible in a count selector.
    policy.set_policy(alice.home, "relay.accept", "reputation.count>=1")
    assert selectors.allows(alice.home, "relay.accept", bob.me.did)[0]
    ok, reason = selectors.allows(alice.home, "relay.accept", carol.me.did)
    assert not ok and "reputation.count" in reason and " is 0" in reason
    # An explicit override raises bob above the bar.
    links.derive(alice.home, alice.me, bob.me.did, confidence=0.9)
    policy.set_policy(alice.home, "relay.accept", "reputation.avg_confidence>=0.8&&trust_link.confidence>=0.85")
    assert selectors.allows(alice.home, "relay.accept", bob.me.did) == (
        True, f"{bob.me.did} meets relay.accept: reputation.avg_confidence>=0.8 and trust_link.confidence>=0.85")
