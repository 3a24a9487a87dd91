"""trust.exposure and signers the node cannot verify: a policy that admits anyone admits a
request signed by a stranger (the CLI always signs) as it admits an unsigned one; a policy
whose outcome depends on who asks refuses it, saying why and how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from hn.node.httpsig import sign_request
from hn.proto.canonical import canonical
from hn.trust import links, remote, reputation
from hn.vault import policy
from hn.vault.identities import import_contact
from tests.integration.test_trust_nodes import Person, _exchange, _get, _person, world  # noqa: F401
from tests.support import run_hn

pytestmark = pytest.mark.timeout(120)


async def test_a_stranger_signing_is_admitted_when_anyone_is(world: dict[str, Person], tmp_path: Path) -> None:  # noqa: F811
    alice, bob, dave = world["alice"], world["bob"], world["dave"]
    erin = _person(tmp_path, "erin")  # alice has never pinned erin's identity
    import_contact(erin.home, canonical(alice.me.doc))
    await _exchange(world, tmp_path)
    links.derive(alice.home, alice.me, bob.me.did)
    reputation.publish(alice.home, alice.me, bob.me.did)
    url = f"{alice.url}/trust/{bob.me.did}"

    # Default deny: the stranger gets the 403 everyone gets.
    status, body = await _get(url, erin.me)
    assert status == 403 and json.loads(body)["error"] == "forbidden"

    # '*' admits anyone, signed or not: the stranger's signed request too (the CLI's fetch).
    policy.set_policy(alice.home, "trust.exposure", "allow", "*")
    assert (await _get(url))[0] == 200
    assert (await _get(url, erin.me))[0] == 200
    fetched = await remote.fetch_reputation(erin.home, erin.me, alice.url, alice.me.did, bob.me.did)
    assert fetched["target"] == bob.me.did
    assert (await _get(url, dave.me))[0] == 200
    # A pinned signer's bad signature is still a 401 (it says what to fix).
    async with aiohttp.ClientSession() as session:
        headers = sign_request(dave.me.keys, "GET", f"{alice.url}/trust/{alice.me.did}", b"")  # another URL
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 401

    # A value of its own for the stranger: who it is matters, and the node cannot tell.
    policy.set_policy(alice.home, "trust.exposure", "friends", erin.me.did)
    status, body = await _get(url, erin.me)
    answer = json.loads(body)
    assert status == 401 and f"unknown signer {erin.me.did}" in answer["detail"], answer
    assert "hn id import" in answer["detail"] and "cannot verify" in answer["detail"]
    # ... and a per-DID deny is the usual 403.
    policy.set_policy(alice.home, "trust.exposure", "deny", erin.me.did)
    assert (await _get(url, erin.me))[0] == 403


async def test_a_stranger_is_refused_by_a_selector_with_the_reason(world: dict[str, Person], tmp_path: Path) -> None:  # noqa: F811
    alice, bob = world["alice"], world["bob"]
    erin = _person(tmp_path, "erin")
    policy.set_policy(alice.home, "trust.exposure", "trust_link.confidence>=0.5")
    status, body = await _get(f"{alice.url}/trust/{bob.me.did}", erin.me)
    answer = json.loads(body)
    assert status == 401 and "cannot verify the signature" in answer["detail"], answer


async def test_exposure_takes_a_selector_from_the_cli_and_the_node_applies_it(
        world: dict[str, Person], tmp_path: Path) -> None:  # noqa: F811
    """docs/trust.md: `hn policy set trust.exposure 'trust_link.confidence>=0.5'`."""
    alice, bob, carol = world["alice"], world["bob"], world["carol"]
    await _exchange(world, tmp_path)
    link = links.derive(alice.home, alice.me, bob.me.did).link
    reputation.publish(alice.home, alice.me, bob.me.did)
    url = f"{alice.url}/trust/{bob.me.did}"
    home = alice.home.root
    for bad in ("trust_link.confidence>=x", "reputation.colour>1", "sometimes"):
        proc = run_hn(home, "policy", "set", "trust.exposure", bad, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "selector" in proc.stderr, proc.stderr
    selector = f"trust_link.confidence>={link['confidence'] / 2:.3f}"
    proc = run_hn(home, "policy", "set", "trust.exposure", selector, "--json")
    assert json.loads(proc.stdout)["value"] == selector
    assert (await _get(url, bob.me))[0] == 200  # alice's link to bob is strong enough
    status, body = await _get(url, carol.me)  # a friend, but alice has no link to her
    assert status == 403 and json.loads(body)["error"] == "forbidden"
    assert (await _get(url))[0] == 403  # unsigned requests never satisfy a selector
    # friends / allowlist, as for the other gated policies
    run_hn(home, "policy", "set", "trust.exposure", "friends")
    assert (await _get(url, carol.me))[0] == 200 and (await _get(url))[0] == 403
    run_hn(home, "policy", "set", "trust.exposure", "allowlist")
    run_hn(home, "policy", "set", "trust.exposure", "allow", "--target", carol.me.did)
    assert (await _get(url, carol.me))[0] == 200 and (await _get(url, bob.me))[0] == 403
