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
from tests.support import make_person, start_node

pytestmark = pytest.mark.timeout(120)
PUSH_ROUTE = "/relay/{did}/presence"


async def fetch(method: str, url: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=data, headers=headers) as resp:
            body = await resp.read()
            try:
                return resp.status, dict(resp.headers), json.loads(body)
            except ValueError:
                return resp.status, dict(resp.headers), body


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


async def test_the_node_does_not_push_to_a_relay_whose_entry_has_expired(pair: Pair) -> None:
    set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() - 60)
    ctx = build_context(pair.bob_home, {"listen": "127.0.0.1:0", "no_dht": True})
    try:
        auto = relay_plugin.AutoPush(ctx)
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await auto.tick(session)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "200") == 0
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "403") == 0
        # renewed: pushed once, and not again while the relay holds that presence
        set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() + 3600)
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await auto.tick(session)
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
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                await auto.tick(session)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "403") == 1
        # a new presence is pushed at once, whatever the last one met
        set_relay(pair.bob_home, pair.bob, pair.alice, pair.url, timefmt.now() + 7200)
        async with aiohttp.ClientSession() as session:
            await auto.tick(session)
        assert requests_seen(pair.node, PUSH_ROUTE, "POST", "403") == 2
    finally:
        ctx.state.close()
