"""What other nodes and clients send the node's routes: malformed bodies, headers and
stale relay entries are refused with a JSON error that says why, never a 500 or an
empty answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from hn.federation import roster
from hn.node.app import Node, build_context
from hn.node.httpsig import sign_request
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.proto.presence import RELAY_TYPE
from hn.relay import node_plugin as relay_plugin
from hn.relay.push import bundle
from hn.vault import identities, policy, presence, store
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import logged, make_person, start_node

pytestmark = pytest.mark.timeout(120)
PUSH_ROUTE = "/relay/{did}/presence"


async def fetch(method: str, url: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, CIMultiDict[str], Any]:
    """(status, headers, body): the body decoded if it is JSON, else its bytes."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=data, headers=headers) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, CIMultiDict(resp.headers), json.loads(body)
            return resp.status, CIMultiDict(resp.headers), body


def requests_seen(node: Node, route: str, method: str, status: str) -> float:
    assert node.ctx is not None
    registry = node.ctx.extras["metrics_registry"]
    value = registry.get_sample_value("hn_http_requests_total", {"route": route, "method": method, "status": status})
    return float(value or 0.0)


class Pair:
    def __init__(self, alice_home: Home, alice: Identity, node: Node, url: str, bob_home: Home, bob: Identity) -> None:
        self.alice_home, self.alice, self.node, self.url = alice_home, alice, node, url
        self.bob_home, self.bob = bob_home, bob


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """alice's node runs (with one published document); bob is her friend, his node does not run."""
    alice_home, alice = make_person(tmp_path, "alice")
    bob_home, bob = make_person(tmp_path, "bob")
    note = tmp_path / "note.txt"
    note.write_bytes(b"0123456789" * 10)
    store.add_files(alice_home, alice.keys, [note], True)
    identities.import_contact(alice_home, canonical(bob.doc))
    identities.import_contact(bob_home, canonical(alice.doc))
    node, url = await start_node(alice_home)
    roster.add(alice_home, bob.did, "http://127.0.0.1:9")
    try:
        yield Pair(alice_home, alice, node, url, bob_home, bob)
    finally:
        await node.stop()


def set_relay(home: Home, me: Identity, relay: Identity, url: str, expires_at: float) -> None:
    """``relay`` as ``me``'s relay until ``expires_at`` (in the past, too), signed into the presence."""
    entry = {"type": RELAY_TYPE, "did": relay.did, "url": url, "expires_at": timefmt.fmt(expires_at)}
    config = home.read_toml("node.toml")
    config["relays"] = [entry]
    home.write_toml("node.toml", config)
    presence.refresh(home, me, relays=[entry])


# -- relays: an expired entry is neither accepted nor pushed -------------------------------

async def test_relay_refuses_a_presence_whose_entry_for_it_has_expired(pair: Pair) -> None:
    set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() - 60)
    target = f"{pair.url}/relay/{pair.bob.did}/presence"
    body = bundle(pair.bob_home, pair.bob)
    status, _, answer = await fetch("POST", target, body, sign_request(pair.bob.keys, "POST", target, body))
    assert status == 403 and answer["error"] == "forbidden", answer
    assert "expired" in answer["detail"] and "hn mcp relay register" in answer["detail"]
    status, _, _ = await fetch("GET", target)
    assert status == 404  # nothing stored
    # renewed, the same relay takes it
    set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() + 3600)
    body = bundle(pair.bob_home, pair.bob)
    status, _, answer = await fetch("POST", target, body, sign_request(pair.bob.keys, "POST", target, body))
    assert status == 200 and answer["accepted"] is True, answer


async def ticks(auto: relay_plugin.AutoPush, n: int) -> None:
    """``n`` rounds of the node's relay push loop, run here instead of on its timer."""
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            await auto.tick(session)


async def test_the_node_does_not_push_to_a_relay_whose_entry_has_expired(pair: Pair) -> None:
    set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() - 60)
    ctx = build_context(pair.bob_home, {"listen": "127.0.0.1:0", "no_dht": True})
    try:
        auto = relay_plugin.AutoPush(ctx)
        await ticks(auto, 3)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "200") == 0
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "403") == 0
        # renewed: pushed once, and not again while the relay holds that presence
        set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() + 3600)
        await ticks(auto, 3)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "200") == 1
    finally:
        ctx.state.close()


async def test_a_refused_push_is_not_repeated_at_once(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_plugin, "RETRY_FIRST", 3600.0, raising=False)
    policy.set_policy(pair.alice_home, "relay.accept", "deny")
    set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() + 3600)
    ctx = build_context(pair.bob_home, {"listen": "127.0.0.1:0", "no_dht": True})
    try:
        auto = relay_plugin.AutoPush(ctx)
        await ticks(auto, 4)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "403") == 1
        # a new presence is pushed at once, whatever the last one met
        set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() + 7200)
        async with aiohttp.ClientSession() as session:
            await auto.tick(session)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "403") == 2
    finally:
        ctx.state.close()


async def test_a_relay_url_edited_by_hand_is_refused_not_a_crash(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    set_relay(pair.bob_home, pair.bob, pair.alice, "http:///nohost", timefmt.now() + 3600)
    ctx = build_context(pair.bob_home, {"listen": "127.0.0.1:0", "no_dht": True})
    try:
        auto = relay_plugin.AutoPush(ctx)
        with logged(caplog, "hn.relay") as events:
            async with aiohttp.ClientSession() as session:
                await auto.tick(session)
        refusals = events("relay.autopush.refused")
        assert len(refusals) == 1 and "names no host" in refusals[0].hn["error"]  # type: ignore[attr-defined]
    finally:
        ctx.state.close()


# -- files: ranges and conditions answered in JSON -----------------------------------------

def artefact_url(pair: Pair) -> str:
    entry = store.load_catalog(pair.alice_home).index_entries()[0]
    return f"{pair.url}/artifact/doc/{entry['id']}"


@pytest.mark.parametrize("asked", ["bytes=5-2", "bytes=100-", "bytes=1000-2000", "bytes=abc", "bytes=0-1,3-4",
                                   "items=0-1", "bytes=-"])
async def test_a_bad_range_is_a_json_416(pair: Pair, asked: str) -> None:
    status, headers, body = await fetch("GET", artefact_url(pair), headers={"Range": asked})
    assert status == 416 and headers["Content-Type"].startswith("application/json"), (status, body)
    assert body["error"] == "range_not_satisfiable" and asked in body["detail"], body
    assert headers["Content-Range"] == "bytes */100"


@pytest.mark.parametrize(("asked", "got"), [("bytes=2-4", b"234"), ("bytes=-3", b"789"), ("bytes=97-", b"789"),
                                            ("bytes=98-5000", b"89")])
async def test_a_good_range_is_served(pair: Pair, asked: str, got: bytes) -> None:
    status, _, body = await fetch("GET", artefact_url(pair), headers={"Range": asked})
    assert status == 206 and body == got


async def test_a_failed_if_match_is_a_json_412(pair: Pair) -> None:
    status, headers, body = await fetch("GET", artefact_url(pair), headers={"If-Match": '"not-this-one"'})
    assert status == 412 and body["error"] == "precondition_failed", body
    status, headers, _ = await fetch("GET", artefact_url(pair))
    status, _, body = await fetch("GET", artefact_url(pair), headers={"If-Match": headers["ETag"]})
    assert status == 200 and len(body) == 100


@pytest.mark.parametrize("route", ["/federate/index?cursor=0", "artefact"])
async def test_if_none_match_star_and_lists(pair: Pair, route: str) -> None:
    url = artefact_url(pair) if route == "artefact" else pair.url + route
    status, headers, _ = await fetch("GET", url)
    etag = headers["ETag"]
    assert status == 200
    for header in ("*", etag, f'"other", {etag}', f"W/{etag}"):
        status, got, body = await fetch("GET", url, headers={"If-None-Match": header})
        assert status == 304 and body == b"", (header, status)
    status, _, _ = await fetch("GET", url, headers={"If-None-Match": '"other"'})
    assert status == 200


# -- notifications: only a friend's own, well-formed ---------------------------------------

@pytest.mark.parametrize(("body", "status"), [
    (b"[1]", 400), (b"{}", 400), (b'{"did":"x","seq":1}', 400), (b'{"seq":1}', 400),
    (b'{"did":"BOB","seq":"x"}', 400), (b'{"did":"BOB","seq":0}', 400), (b'{"did":"BOB","seq":true}', 400),
    (b'{"did":"BOB"}', 400), (b'{"did":"ALICE","seq":3}', 403), (b'{"did":"BOB","seq":3}', 200),
])
async def test_a_notification_is_checked(pair: Pair, body: bytes, status: int) -> None:
    body = body.replace(b"BOB", pair.bob.did.encode()).replace(b"ALICE", pair.alice.did.encode())
    target = pair.url + "/federate/notify"
    got, _, answer = await fetch("POST", target, body, sign_request(pair.bob.keys, "POST", target, body))
    assert got == status, answer
    if status == 200:
        assert answer == {"accepted": True}
    else:
        assert answer["error"] == ("malformed" if status == 400 else "forbidden") and answer["detail"], answer


# -- backups: a header without an owner is malformed, not someone else's ------------------

@pytest.mark.parametrize("header", [
    {}, {"type": "backup@1"}, {"type": "backup@1", "id": "0" * 32},
    {"type": "backup@1", "id": "0" * 32, "owner": 42}, {"type": "backup@1", "id": "0" * 32, "owner": "nobody"},
])
async def test_a_backup_header_without_an_owner_is_malformed(pair: Pair, header: dict[str, Any]) -> None:
    body = canonical(header)
    target = pair.url + "/backup"
    status, _, answer = await fetch("POST", target, body, sign_request(pair.bob.keys, "POST", target, body))
    assert status == 400 and answer["error"] == "malformed", answer
    assert "belongs to None" not in answer["detail"]


@pytest.mark.parametrize("path", ["/relay/xyz/presence", "/relay/xyz/index?cursor=0",
                                  "/relay/did:hn:UPPER/artifact/doc/" + "0" * 64])
async def test_a_relay_route_for_something_not_a_did_is_a_400(pair: Pair, path: str) -> None:
    status, _, body = await fetch("GET", pair.url + path)
    assert status == 400 and body["error"] == "malformed" and "not a did:hn DID" in body["detail"], body
    target = pair.url + "/relay/xyz/presence"
    status, _, body = await fetch("POST", target, b"{}", sign_request(pair.bob.keys, "POST", target, b"{}"))
    assert status == 400 and body["error"] == "malformed", body


@pytest.mark.parametrize("path", ["/trust/xyz", "/trust/xyz/links", "/trust/did:hn:UPPER"])
async def test_a_trust_route_for_something_not_a_did_is_a_400(pair: Pair, path: str) -> None:
    """Said before who may see what: a malformed path is malformed whoever asks."""
    status, _, body = await fetch("GET", pair.url + path)
    assert status == 400 and body["error"] == "malformed" and "not a did:hn DID" in body["detail"], body
