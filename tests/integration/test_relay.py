"""Presence relays with four real nodes: alice relays for bob while bob's node is off."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from hn.node.httpsig import sign_request
from hn.proto.canonical import canonical, loads_canonical
from hn.relay.push import bundle
from hn.smoke.harness import Harness
from hn.vault import identities
from hn.vault.home import Home
from tests.support import relayed_trio

TTL = 4


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_relay_keeps_an_offline_peer_reachable(harness: Harness, tmp_path: Path) -> None:
    h = harness
    peers = h.add_people("alice", "bob", "carol", "dora")
    alice, bob, carol, dora = peers
    note = tmp_path / "bob.md"
    note.write_text("bob's note\n")
    bob_doc = h.hn_json(bob, "doc", "add", str(note), "--publish")["added"][0]["id"]
    h.start_node(alice, "--relay-ttl", str(TTL), dht=False)
    for p in (bob, carol, dora):
        h.start_node(p, dht=False)
    h.federate_all(peers)
    shard = h.hn_json(bob, "doc", "share", bob_doc, "--to", carol.did)["id"]
    h.hn_json(alice, "mcp", "federate", "refresh", "--mirror")
    h.hn_json(carol, "mcp", "federate", "refresh")

    registered = h.hn_json(bob, "mcp", "relay", "register", alice.did, "--url", alice.url)
    assert registered["relay"]["did"] == alice.did
    pushed = h.hn_json(bob, "mcp", "relay", "push")
    assert pushed["ok"] is True
    relayed_url = f"{alice.url}/relay/{bob.did}/presence"
    status, body = get(relayed_url)
    assert status == 200 and json.loads(body)["seq"] == registered["presence_seq"]
    listed = h.hn_json(alice, "mcp", "relay", "list")["relayed"]
    assert [r["did"] for r in listed] == [bob.did]
    assert h.hn_json(bob, "mcp", "relay", "list")["relays"][0]["did"] == alice.did

    # bob's node goes away; carol still gets his index (through alice) and opens his shard
    h.stop_node(bob)
    result = h.hn_json(carol, "mcp", "federate", "refresh", "--mirror")
    row = next(r for r in result["peers"] if r["did"] == bob.did)
    assert row["ok"] is True and row["source"] == f"relay:{alice.did}", row
    # A roster URL for bob that carol's node refuses (edited by hand): his relay still answers.
    roster = carol.home / "config" / "federation.toml"
    text = roster.read_text()
    assert f'"{bob.url}"' in text
    roster.write_text(text.replace(f'"{bob.url}"', '"http:///nohost"'))
    result = h.hn_json(carol, "mcp", "federate", "refresh")
    row = next(r for r in result["peers"] if r["did"] == bob.did)
    assert row["ok"] is True and row["source"] == f"relay:{alice.did}", row
    roster.write_text(text)
    # bob rotates his key while his node is off: his push teaches his relay the new key, and
    # carol, who pinned the old one, learns it from the relay.
    h.hn_json(bob, "id", "rotate")
    assert h.hn_json(bob, "mcp", "relay", "push")["ok"] is True
    result = h.hn_json(carol, "mcp", "federate", "refresh")
    row = next(r for r in result["peers"] if r["did"] == bob.did)
    assert row["ok"] is True and row["source"] == f"relay:{alice.did}", row
    status, body = get(f"{alice.url}/relay/{bob.did}/identity")
    assert status == 200 and len(json.loads(body)["keys"]) == 2
    resolved = h.hn_json(carol, "discover", "resolve", bob.did)
    assert resolved["source"] == f"relay:{alice.did}" and resolved["presence"]["did"] == bob.did
    out = tmp_path / "opened.md"
    h.hn_json(carol, "doc", "open", shard, "--out", str(out))
    assert out.read_text() == "bob's note\n"

    # TTL expiry: the relay forgets bob, then a new push restores him
    deadline = time.monotonic() + TTL + 10
    while get(relayed_url)[0] != 404 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert get(relayed_url)[0] == 404
    assert get(f"{alice.url}/relay/{bob.did}/index?cursor=0")[0] == 404
    assert h.hn_json(bob, "mcp", "relay", "push")["ok"] is True
    assert get(relayed_url)[0] == 200


def test_relay_refuses_bad_pushes(harness: Harness, tmp_path: Path) -> None:
    h = harness
    alice, bob, carol = relayed_trio(h)
    h.hn_json(carol, "mcp", "relay", "register", alice.did, "--url", alice.url)
    bob_id = identities.load(Home(bob.home))
    carol_id = identities.load(Home(carol.home))
    url_bob = f"{alice.url}/relay/{bob.did}/presence"
    old_body = bundle(Home(bob.home), bob_id)
    before = get(url_bob)[1]

    # signed by another DID (carol pushes bob's bundle)
    status, answer = post(url_bob, old_body, sign_request(carol_id.keys, "POST", url_bob, old_body))
    assert status == 403 and "must be signed by" in answer["detail"]
    # a presence for another DID than the signer's (carol's presence under her own name, bob's path)
    carol_body = bundle(Home(carol.home), carol_id)
    status, answer = post(url_bob, carol_body, sign_request(carol_id.keys, "POST", url_bob, carol_body))
    assert status == 403
    url_carol = f"{alice.url}/relay/{carol.did}/presence"
    mixed = loads_canonical(carol_body)
    mixed["presence"] = loads_canonical(old_body)["presence"]
    mixed_raw = canonical(mixed)
    status, answer = post(url_carol, mixed_raw, sign_request(carol_id.keys, "POST", url_carol, mixed_raw))
    assert status in (400, 403) and answer["error"] in ("verification_failed", "forbidden"), answer
    # a replayed push (same signed request twice)
    h.hn_json(bob, "mcp", "relay", "register", alice.did, "--url", alice.url)  # new presence seq
    new_body = bundle(Home(bob.home), bob_id)
    headers = sign_request(bob_id.keys, "POST", url_bob, new_body)
    assert post(url_bob, new_body, headers)[0] == 200
    status, answer = post(url_bob, new_body, headers)
    assert status == 401 and "replayed" in answer["detail"]
    current = get(url_bob)[1]
    # an older seq
    status, answer = post(url_bob, old_body, sign_request(bob_id.keys, "POST", url_bob, old_body))
    assert status == 409 and answer["error"] == "rollback"
    # an over-cap body
    huge = b'{"presence":' + b" " * (5 * 1024 * 1024) + b"}"
    status, _ = post(url_bob, huge, sign_request(bob_id.keys, "POST", url_bob, huge))
    assert status == 413
    # nothing relayed before was lost
    assert get(url_bob) == (200, current) and current != before
    # after a restart of the relay: the relayed presence, the roster and the seq
    # high-water mark are still there, so the old seq is still refused
    h.stop_node(alice)
    h.start_node(alice, dht=False)
    assert get(url_bob) == (200, current)
    status, answer = post(url_bob, old_body, sign_request(bob_id.keys, "POST", url_bob, old_body))
    assert status == 409 and answer["error"] == "rollback"
    assert [r["did"] for r in h.hn_json(bob, "mcp", "relay", "list")["relays"]] == [alice.did]
    # carol's own node pushed her presence by itself after she registered alice
    assert json.loads(get(url_carol)[1])["did"] == carol.did
