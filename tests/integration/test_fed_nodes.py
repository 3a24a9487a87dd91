"""Three real nodes on 127.0.0.1 federate: sync, mirror, shards, 304s, push-notify, and every
kind of bad data refused with its reason visible in `hn mcp federate list`."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from hn.proto.canonical import canonical
from hn.smoke.harness import Harness, Peer
from tests.integration.hostile import Proxy


def setup_three(h: Harness, tmp: Path, federate: bool = True) -> dict[str, Peer]:
    """alice, bob and carol, each with a published note and a node (all federated unless not)."""
    people = h.add_people("alice", "bob", "carol")
    for p in people:
        note = tmp / f"{p.name}.md"
        note.write_text(f"{p.name}'s published note\n")
        h.hn_json(p, "doc", "add", str(note), "--publish")
        h.start_node(p, dht=False)
    if federate:
        h.federate_all(people)
    return {p.name: p for p in people}


def peer_row(h: Harness, who: Peer, did: str) -> dict:
    return next(p for p in h.hn_json(who, "mcp", "federate", "list")["peers"] if p["did"] == did)


def test_three_nodes_federate(harness: Harness, tmp_path: Path) -> None:
    h = harness
    p = setup_three(h, tmp_path)
    alice, bob, carol = p["alice"], p["bob"], p["carol"]
    for who in p.values():
        result = h.hn_json(who, "mcp", "federate", "refresh", "--mirror")
        assert result["ok"] is True and len(result["peers"]) == 2
        for row in result["peers"]:
            presence = json.loads(urllib.request.urlopen(
                next(q for q in p.values() if q.did == row["did"]).url + "/.well-known/hn/presence").read())
            assert row["root"] == presence["index"]["root"] and row["size"] == presence["index"]["size"]
    # no change: a 304, no entries transferred
    again = h.hn_json(carol, "mcp", "federate", "refresh")
    assert all(r["not_modified"] and r["entries"] == 0 for r in again["peers"])
    assert {r["health"] for r in h.hn_json(carol, "mcp", "federate", "list")["peers"]} == {"ok"}
    # bob shares with carol; bob's node notifies carol's, whose worker mirrors the shard
    bob_doc = h.hn_json(bob, "doc", "list")["artefacts"][0]["id"]
    shard = h.hn_json(bob, "doc", "share", bob_doc, "--to", carol.did)["id"]
    mirrored = carol.home / "cache" / "federation" / bob.did[7:] / "artifacts" / "shard" / shard
    deadline = time.monotonic() + 20
    while not mirrored.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mirrored.exists(), "push-notify did not bring bob's shard to carol"
    out = tmp_path / "opened.md"
    h.hn_json(carol, "doc", "open", shard[:10], "--out", str(out))
    assert out.read_text() == "bob's published note\n"
    # alice cannot open it, though her node mirrored it too
    h.hn_json(alice, "mcp", "federate", "refresh", "--mirror")
    denied = h.hn(alice, "doc", "open", shard, "--out", str(tmp_path / "x"), check=False)
    assert denied.returncode == 1 and "addressed to" in denied.stderr
    status = h.hn_json(carol, "status")
    assert status["node"]["running"] is True and status["health"] == {"ok": 2}


def test_bad_peers_refused_with_reason(harness: Harness, tmp_path: Path) -> None:
    h = harness
    alice, bob, mallory = h.add_people("alice", "bob", "mallory")
    note = tmp_path / "b.md"
    note.write_text("bob\n")
    h.hn_json(bob, "doc", "add", str(note), "--publish")
    h.start_node(bob, dht=False)
    h.start_node(mallory, dht=False)
    proxy = Proxy(bob.url).start()
    try:
        h.hn_json(alice, "mcp", "federate", "add", bob.did, proxy.url)
        assert h.hn_json(alice, "mcp", "federate", "refresh")["ok"] is True
        good_presence = urllib.request.urlopen(bob.url + "/.well-known/hn/presence").read()

        def refused(expect: str) -> None:
            result = h.hn(alice, "mcp", "federate", "refresh", "--mirror", "--json", check=False)
            assert result.returncode == 1, result.stdout
            row = peer_row(h, alice, bob.did)
            assert row["health"] == "failing" and expect in (row["last_error"] or ""), row["last_error"]

        # a tampered slice: one byte of an entry changed
        h.hn_json(bob, "doc", "unpublish", h.hn_json(bob, "doc", "list")["artefacts"][0]["id"])
        proxy.mutate = lambda path, status, body: (status, body.replace(b'"tombstone"', b'"doc"')) \
            if path == "/federate/index" else (status, body)
        refused("")
        # wrong key: mallory's presence served for bob
        mallory_presence = urllib.request.urlopen(mallory.url + "/.well-known/hn/presence").read()
        proxy.mutate = lambda path, status, body: (status, mallory_presence) \
            if path.endswith("/presence") else (status, body)
        refused("presence is for")
        # a rolled-back seq: the presence captured before bob's last change
        proxy.mutate = lambda path, status, body: (status, good_presence) \
            if path.endswith("/presence") else (status, body)
        refused("older than")
        # a good sync still works and the cached data was never overwritten by the bad ones
        proxy.mutate = lambda path, status, body: (status, body)
        h.hn_json(bob, "doc", "publish", h.hn_json(bob, "doc", "list")["artefacts"][0]["id"])
        assert h.hn_json(alice, "mcp", "federate", "refresh")["ok"] is True
        # an artefact whose bytes differ from its digest
        proxy.mutate = lambda path, status, body: (status, body[:-1] + bytes([body[-1] ^ 1])) \
            if path.startswith("/artifact/") else (status, body)
        refused("does not match its digest")
        # path traversal in an entry path, in a slice properly signed by bob
        from hn.proto import timefmt
        from hn.proto.canonical import loads_canonical
        from hn.proto.index import build_slice
        from hn.vault import identities
        from hn.vault.home import Home

        bob_id = identities.load(Home(bob.home))
        def traversal(path: str, status: int, body: bytes) -> tuple[int, bytes]:
            if path != "/federate/index" or status != 200:
                return status, body
            doc = loads_canonical(body)
            live = json.loads(urllib.request.urlopen(bob.url + "/.well-known/hn/presence").read())
            evil = dict(doc["entries"][0]) if doc["entries"] else {
                "type": "doc", "id": "a" * 64, "digest": "a" * 64, "size": 1, "metadata": {}}
            evil["path"] = "../../../../etc/passwd"
            forged = build_slice(bob_id.keys, bob.url, live, doc["cursor"], doc["next_cursor"], False, [evil],
                                 timefmt.now_iso())
            return 200, canonical(forged)

        proxy.mutate = traversal
        other = tmp_path / "b2.md"
        other.write_text("bob again\n")
        h.hn_json(bob, "doc", "add", str(other), "--publish")  # moves bob's index: a fresh slice is fetched
        refused("path traversal refused")
        assert not (alice.home / "etc").exists()
    finally:
        proxy.stop()


def test_replayed_signed_request_refused(harness: Harness, tmp_path: Path) -> None:
    import urllib.error

    from hn.node.httpsig import sign_request
    from hn.vault import identities
    from hn.vault.home import Home

    h = harness
    alice, bob, carol = h.add_people("alice", "bob", "carol")
    for peer in (alice, bob, carol):
        h.start_node(peer, dht=False)
    for peer in (bob, carol):
        h.hn_json(peer, "mcp", "federate", "add", alice.did, alice.url)
    me = identities.load(Home(alice.home))
    body = b'{"did":"%s","seq":1}' % alice.did.encode()

    def post(url: str, headers: dict[str, str], data: bytes) -> int:
        req = urllib.request.Request(url, data=data, headers={**headers, "Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(req).status
        except urllib.error.HTTPError as exc:
            return exc.code

    target = bob.url + "/federate/notify"
    headers = sign_request(me.keys, "POST", target, body)
    assert post(target, headers, body) == 200
    assert post(target, headers, body) == 401, "replay accepted"
    fresh = sign_request(me.keys, "POST", target, body)
    assert post(carol.url + "/federate/notify", fresh, body) == 401, "request for bob accepted by carol"
    fresh = sign_request(me.keys, "POST", target, body)
    assert post(target, fresh, body.replace(b"1", b"2")) == 401, "changed body accepted"
    assert post(target, {}, body) == 401


def test_a_peer_stuck_mid_download_holds_up_no_other_peer_s_sync(harness: Harness, tmp_path: Path) -> None:
    """carol's node mirrors from bob through a proxy that never answers an artefact request
    (until released); meanwhile alice's new note, announced by her node, still reaches carol."""
    h = harness
    alice, bob, carol = setup_three(h, tmp_path, federate=False).values()
    bobs = h.hn_json(bob, "doc", "list")["artefacts"][0]["id"]

    def has_bobs() -> bool:
        return any(p.name == bobs for p in (carol.home / "cache" / "federation" / bob.did[7:]).rglob("*"))

    proxy = Proxy(bob.url).start()
    proxy.stall = lambda path: path.startswith("/artifact/")
    try:
        h.hn_json(carol, "mcp", "federate", "add", bob.did, proxy.url)
        h.hn_json(carol, "mcp", "federate", "add", alice.did, alice.url)
        h.hn_json(alice, "mcp", "federate", "add", carol.did, carol.url)  # so alice's node notifies carol's
        deadline = time.monotonic() + 20
        while not proxy.stalled and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.stalled, "carol's node never asked bob for an artefact"

        second = tmp_path / "second.md"
        second.write_text("alice's second note\n")
        doc = h.hn_json(alice, "doc", "add", str(second), "--publish")["added"][0]["id"]
        mirrored = carol.home / "cache" / "federation" / alice.did[7:] / "artifacts"
        deadline = time.monotonic() + 20
        while not any(p.name == doc for p in mirrored.rglob("*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(p.name == doc for p in mirrored.rglob("*")), "alice's new note waited for bob's download"
        assert not has_bobs()
    finally:
        proxy.release()
    # Released, bob's artefact arrives too.
    deadline = time.monotonic() + 30
    while not has_bobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    proxy.stop()
    assert has_bobs()
