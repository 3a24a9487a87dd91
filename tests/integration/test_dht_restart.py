"""DHT nodes that restart (THREATS.md 2): the highest seq per key and the records held
survive on disk, and a node stores its own hint again as soon as it has joined."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from hn.dht.node import DhtNode
from hn.dht.storage import HELD_FILE, MARKS_PER_RECORD, SEQS_FILE, HintStore
from hn.proto.dht_hint import dht_key
from hn.smoke.harness import Harness
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.fault.test_dht_hostile import raw_peer
from tests.integration.test_dht_network import make_hint


async def started(path: Path) -> DhtNode:
    node = DhtNode(state_path=path)
    await node.listen(0, "127.0.0.1")
    return node


async def wait_for_file(path: Path) -> None:
    for _ in range(100):
        if path.exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} was never written")


async def test_an_older_seq_is_refused_before_and_after_a_restart(tmp_path: Path, alice: Identity) -> None:
    state = tmp_path / "dht" / "state.json"
    key = dht_key(alice.did)
    peer = await raw_peer()
    node = await started(state)
    try:
        assert await peer.ask(node.address, "store", peer.node_id, key, make_hint(alice, 5)) is True  # type: ignore[arg-type]
        assert await peer.ask(node.address, "store", peer.node_id, key, make_hint(alice, 4)) is False  # type: ignore[arg-type]
        # The mark reaches the disk on its own, soon: a node killed now still has it.
        await wait_for_file(state.parent / SEQS_FILE)
    finally:
        node.stop()  # no save_state: as if the process had been killed
    again = await started(state)
    try:
        assert await peer.ask(again.address, "store", peer.node_id, key, make_hint(alice, 4)) is False  # type: ignore[arg-type]
        assert again.storage.get(key) is None
        newer = make_hint(alice, 6)
        assert await peer.ask(again.address, "store", peer.node_id, key, newer) is True  # type: ignore[arg-type]
        again.save_state()  # what a clean stop does
    finally:
        again.stop()
        assert peer.transport is not None
        peer.transport.close()
    # After a clean stop the record itself is kept too, verified again on start.
    third = await started(state)
    try:
        assert third.storage.get(key) == newer
        got = await third.get_hints(alice.did)
        assert got.hint is not None and got.hint.seq == 6
        assert not third.storage.offer(key, make_hint(alice, 5)).accepted
    finally:
        third.stop()


def test_marks_outlive_their_records_and_are_bounded(tmp_path: Path) -> None:
    home = Home(tmp_path / "vault")
    home.ensure()
    people = [identities.create(home, f"p{i}") for i in range(4)]
    store = HintStore(cap=1, folder=tmp_path)
    assert store.max_marks == MARKS_PER_RECORD
    for i, person in enumerate(people):
        store.offer(dht_key(person.did), make_hint(person, 10 + i, ttl=3600))
        store.records.clear()  # as if each had expired: the marks stay
    last = make_hint(people[0], 20)
    store.offer(dht_key(people[0].did), last)
    store.save()
    saved = json.loads((tmp_path / SEQS_FILE).read_bytes())
    # people[0]'s mark was raised last, so people[1]'s (the oldest) made room for it.
    assert len(saved["seqs"]) == MARKS_PER_RECORD
    assert saved["seqs"][-1] == [dht_key(people[0].did).hex(), 20]
    reread = HintStore(cap=1, folder=tmp_path)
    assert reread.marks[dht_key(people[2].did)] == 12
    assert not reread.offer(dht_key(people[2].did), make_hint(people[2], 11)).accepted
    assert json.loads((tmp_path / HELD_FILE).read_bytes())["records"] == [last.decode()]


def test_restarted_nodes_serve_the_hint_again_at_once(harness: Harness) -> None:
    """Three nodes restart, their held records lost: the publisher stores its hint again."""
    h = harness
    alice, bob, carol = h.add_people("alice", "bob", "carol")
    reader = h.add_people("reader")[0]

    def start_all() -> None:
        h.start_node(alice)
        h.start_node(bob, bootstrap=[alice.dht])
        h.start_node(carol, bootstrap=[alice.dht])

    start_all()
    published = h.hn_json(alice, "discover", "publish")
    assert published["dht"]["acks"] >= 1
    seq = published["hint"]["seq"]
    for peer in (alice, bob, carol):
        h.stop_node(peer)
        # Fault injection: every holder lost what it held (a node of an older version, a
        # wiped cache). Only the publisher's own saved hint can bring the DID back.
        (peer.home / "cache" / "dht" / HELD_FILE).unlink(missing_ok=True)
    start_all()
    found = None
    for _ in range(20):  # the publisher stores it once it has rejoined (join retries back off from 2 s)
        proc = h.hn(reader, "discover", "resolve", alice.did, "--bootstrap", bob.dht, "--dht-only", "--json",
                    check=False)
        if proc.returncode == 0:
            found = json.loads(proc.stdout)
            break
        time.sleep(1)
    assert found is not None, proc.stderr
    assert found["hint_seq"] == seq and found["presence"]["did"] == alice.did
