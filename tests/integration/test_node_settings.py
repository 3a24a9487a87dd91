"""Node settings that must take effect: the federation profile's friends-only mode (and its
other policies), a listen port the system picks, and the index slice limit."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from hn.federation import roster
from hn.node import profile
from hn.node.httpsig import sign_request
from hn.proto.canonical import canonical
from hn.relay.node_plugin import relay_ttl
from hn.vault import identities, policy, store
from tests.support import make_person, run_hn, run_json, start_node

pytestmark = pytest.mark.timeout(120)


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as resp:
            return resp.status, await resp.read()


async def test_the_profile_makes_the_node_friends_only_until_a_policy_says_otherwise(tmp_path: Path) -> None:
    home, alice = make_person(tmp_path, "alice")
    _, bob = make_person(tmp_path, "bob")
    _, carol = make_person(tmp_path, "carol")
    note = tmp_path / "note.txt"
    note.write_bytes(b"only for friends\n")
    store.add_files(home, alice.keys, [note], True)
    doc = store.load_catalog(home).index_entries()[0]
    profile.ensure(home, {"public_url": "http://127.0.0.1:1"})
    for other in (bob, carol):
        identities.import_contact(home, canonical(other.doc))
    roster.add(home, bob.did, "http://127.0.0.1:9")
    shown = run_json(home.root, "policy", "show")["policies"]
    assert shown["federation.mode"]["value"] == "friends" and shown["federation.mode"]["source"] == "profile"
    assert shown["trust.exposure"]["source"] == "profile" and shown["backup.retention"]["source"] == "default"
    assert shown["relay.ttl"] == {**shown["relay.ttl"], "value": "86400", "source": "profile"}
    node, url = await start_node(home)
    try:
        index, artefact = f"{url}/federate/index?cursor=0", f"{url}/artifact/doc/{doc['id']}"
        for target in (index, artefact):
            status, _ = await get(target)  # a stranger, unsigned
            assert status == 401, target
            status, _ = await get(target, sign_request(carol.keys, "GET", target, b""))  # known, not a friend
            assert status == 403, target
            status, body = await get(target, sign_request(bob.keys, "GET", target, b""))  # a friend
            assert status == 200, target
        assert body == b"only for friends\n"
        # The owner's policies win over the profile's values.
        assert relay_ttl(node.ctx) == 86400
        policy.set_policy(home, "relay.ttl", "60")
        assert relay_ttl(node.ctx) == 60
        policy.set_policy(home, "federation.mode", "public")
        assert (await get(artefact))[0] == 200
        assert run_json(home.root, "policy", "show")["policies"]["federation.mode"]["source"] == "policy"
    finally:
        await node.stop()


def test_a_node_does_not_start_with_a_profile_policy_it_cannot_apply(tmp_path: Path) -> None:
    home, _ = make_person(tmp_path, "alice")
    profile.ensure(home, {"public_url": "http://127.0.0.1:1"})
    config = home.path("config", profile.FILES[0])
    config.write_text(config.read_text().replace('mode = "friends"', 'mode = "friend"'))
    proc = run_hn(home.root, "mcp", "serve", "--listen", "127.0.0.1:0", "--no-dht", check=False)
    assert proc.returncode == 1, proc.stderr
    assert "[federation] mode = 'friend'" in proc.stderr and "public, friends" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing falls back to public meanwhile: the value is not one, so the built-in default shows.
    assert policy.from_profile(home, "federation.mode") is None
    shown = run_json(home.root, "policy", "show")["policies"]["federation.mode"]
    assert shown["source"] == "default" and shown["refused_profile_value"] == "friend"
    assert "the profile's 'friend' is not a value it takes" in run_hn(home.root, "policy", "show").stdout


async def test_a_port_the_system_picks_is_the_one_in_the_nodes_urls(tmp_path: Path) -> None:
    home, alice = make_person(tmp_path, "alice")
    node, _ = await start_node(home, listen="127.0.0.1:0", public_url=None)
    try:
        assert node.port != 0
        url = f"http://127.0.0.1:{node.port}"
        assert node.ctx is not None and node.ctx.base_url == url
        assert home.read_toml("node.toml")["public_url"] == url
        status, body = await get(url + "/.well-known/hn/presence")
        assert status == 200 and b'"url":"' + url.encode() + b'"' in body
    finally:
        await node.stop()


@pytest.mark.parametrize("limit", ["0", "-5", "1e9", "5001", "99999999999999999999", "x", ""])
async def test_an_index_limit_out_of_range_is_a_400(tmp_path: Path, limit: str) -> None:
    home, _ = make_person(tmp_path, "alice")
    node, url = await start_node(home)
    try:
        status, body = await get(f"{url}/federate/index?cursor=0&limit={limit}")
        assert status == 400 and b"limit must be a whole number from 1 to 5000" in body, body
        assert (await get(f"{url}/federate/index?cursor=0&limit=1"))[0] == 200
    finally:
        await node.stop()
