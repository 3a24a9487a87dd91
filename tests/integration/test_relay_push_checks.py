"""What a relay accepts, refuses, logs and keeps: real signed pushes to a real node.

Covers the whole-index rule for slices, signers the policy admits without being contacts,
fork evidence (logged, both documents kept, bounded), expiry logged by whichever path
removes the record, and the push body cap as spec/openapi.json states it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hn.node.httpsig import sign_request
from hn.node.state import FORK_FILES_PER_DID
from hn.proto import timefmt
from hn.proto.canonical import canonical, doc_digest, loads_canonical
from hn.proto.signed import sign_document
from hn.relay import node_plugin as relay_plugin
from hn.relay import push as relay_push
from hn.relay import roster as relay_roster
from hn.relay.push import bundle
from hn.vault import identities, policy, store
from hn.vault.home import Home
from hn.vault.identities import Identity, did_tail
from tests.support import logged, make_person, start_node

pytestmark = pytest.mark.timeout(120)
SPEC = Path(__file__).resolve().parents[2] / "spec" / "openapi.json"


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Home, Identity, Any, str]]:
    home, me = make_person(tmp_path, "alice")
    node, url = await start_node(home)
    try:
        yield home, me, node, url
    finally:
        await node.stop()


def peer(tmp_path: Path, name: str, relay_home: Home, relay_me: Identity, url: str,
         contact: bool = True) -> tuple[Home, Identity]:
    """A person who has registered the relay (a contact of the relay's owner if ``contact``)."""
    home, me = make_person(tmp_path, name)
    identities.import_contact(home, canonical(relay_me.doc))
    if contact:
        identities.import_contact(relay_home, canonical(me.doc))
    relay_roster.register(home, me, relay_me.did, url)
    return home, me


async def post(url: str, me: Identity, doc: dict[str, Any] | bytes, keys: Any = None) -> tuple[int, dict[str, Any]]:
    target = f"{url}/relay/{me.did}/presence"
    body = doc if isinstance(doc, bytes) else canonical(doc)
    headers = sign_request(keys or me.keys, "POST", target, body)
    async with aiohttp.ClientSession() as session, session.post(target, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read()


def publish_one(tmp_path: Path, home: Home, me: Identity) -> None:
    note = tmp_path / f"{me.alias}.md"
    note.write_text(f"{me.alias}'s note\n")
    store.add_files(home, me.keys, [note], publish=True)


def bob_publishing(relay: tuple[Home, Identity, Any, str], tmp_path: Path) -> tuple[Home, str, Home, Identity]:
    """bob, a contact of the relay's owner who has registered the relay, with one published
    note: (the relay's home, its URL, bob's home, bob)."""
    a_home, alice, _, url = relay
    b_home, bob = peer(tmp_path, "bob", a_home, alice, url)
    publish_one(tmp_path, b_home, bob)
    return a_home, url, b_home, bob


# -- #7: the whole index, from cursor 0 ---------------------------------------------------

async def test_a_push_without_the_index_slices_is_refused(relay: tuple[Home, Identity, Any, str],
                                                          tmp_path: Path) -> None:
    a_home, url, b_home, bob = bob_publishing(relay, tmp_path)
    whole = loads_canonical(bundle(b_home, bob))
    assert whole["presence"]["index"]["size"] == 1

    status, answer = await post(url, bob, {**whole, "slices": []})
    assert status == 400 and answer["error"] == "verification_failed", answer
    assert "no index slices" in answer["detail"] and "1 entries" in answer["detail"]
    status, answer = await post(url, bob, {k: v for k, v in whole.items() if k != "slices"})
    assert status == 400, answer
    assert (await get(f"{url}/relay/{bob.did}/presence"))[0] == 404  # nothing stored

    status, answer = await post(url, bob, whole)
    assert status == 200 and answer["slices"] == 1, answer
    status, raw = await get(f"{url}/relay/{bob.did}/index?cursor=0")
    assert status == 200 and loads_canonical(raw)["entries"]


async def test_slices_must_follow_each_other_from_cursor_0(relay: tuple[Home, Identity, Any, str],
                                                           tmp_path: Path) -> None:
    a_home, url, b_home, bob = bob_publishing(relay, tmp_path)
    whole = loads_canonical(bundle(b_home, bob))
    [first] = whole["slices"]
    # The only slice, re-signed by bob as if it were at another cursor: signed, but not the index from 0.
    moved = sign_document({**first, "cursor": first["next_cursor"]}, bob.keys)
    status, answer = await post(url, bob, {**whole, "slices": [moved]})
    assert status == 400 and "expected 0" in answer["detail"], answer
    status, answer = await post(url, bob, {**whole, "slices": [first, first]})
    assert status == 400 and "more false" in answer["detail"], answer


# -- #8: signers the policy admits without being contacts -----------------------------------

async def test_policy_allow_admits_a_signer_that_is_not_a_contact(relay: tuple[Home, Identity, Any, str],
                                                                  tmp_path: Path) -> None:
    a_home, alice, _, url = relay
    c_home, carol = peer(tmp_path, "carol", a_home, alice, url, contact=False)

    # The default (friends): refused, with why and both ways in.
    [refused] = await relay_push.push(c_home, carol)
    assert refused["status"] == 401, refused
    assert f"unknown signer {carol.did}" in refused["error"] and "admits friends only" in refused["error"]
    assert "hn id import" in refused["error"]
    assert f"hn policy set relay.accept allow --target {carol.did}" in refused["error"]

    policy.set_policy(a_home, "relay.accept", "allow")
    [accepted] = await relay_push.push(c_home, carol)
    assert accepted["ok"] is True, accepted
    status, raw = await get(f"{url}/relay/{carol.did}/presence")
    assert status == 200 and json.loads(raw)["did"] == carol.did
    # Relaying for carol does not make her a contact (a friend for every other policy).
    assert carol.did not in identities.contact_dids(a_home)
    assert identities.known_history(a_home, carol.did) is None

    # The signature is still checked, against the identity the push carries.
    whole = loads_canonical(bundle(c_home, carol))
    body = canonical(whole)
    target = f"{url}/relay/{carol.did}/presence"
    headers = sign_request(carol.keys, "POST", target, body)
    async with aiohttp.ClientSession() as session:
        async with session.post(target, data=body.replace(b'"slices"', b' "slices"'), headers=headers) as resp:
            assert resp.status == 401, await resp.text()
        # Signed by dave (his keyid), for carol's path: refused.
        d_home, dave = make_person(tmp_path, "dave")
        headers = sign_request(dave.keys, "POST", target, body)
        async with session.post(target, data=body, headers=headers) as resp:
            assert resp.status == 403, await resp.text()
    # carol's push carrying dave's identity: not the signer's.
    status, answer = await post(url, carol, {**whole, "identity": dave.doc})
    assert status == 400 and "not the signer's" in answer["detail"], answer

    # carol rotates her key; a later push that offers her old one-key history is a rollback
    # of the history this relay pinned with her record.
    carol2 = identities.rotate(c_home)
    [rotated] = await relay_push.push(c_home, carol2)
    assert rotated["ok"] is True, rotated
    newer = loads_canonical(bundle(c_home, carol2))
    status, answer = await post(url, carol2, {**newer, "identity": carol.doc})
    assert status == 409 and answer["error"] == "rollback", answer


async def test_allowlist_admits_the_dids_set_to_allow(relay: tuple[Home, Identity, Any, str],
                                                      tmp_path: Path) -> None:
    a_home, alice, _, url = relay
    d_home, dave = peer(tmp_path, "dave", a_home, alice, url, contact=False)
    e_home, erin = peer(tmp_path, "erin", a_home, alice, url, contact=False)
    policy.set_policy(a_home, "relay.accept", "allowlist")
    policy.set_policy(a_home, "relay.accept", "allow", target=dave.did)

    [accepted] = await relay_push.push(d_home, dave)
    assert accepted["ok"] is True, accepted
    [refused] = await relay_push.push(e_home, erin)
    assert refused["status"] == 401 and "allowlist" in refused["error"], refused
    assert f"--target {erin.did}" in refused["error"]
    assert (await get(f"{url}/relay/{erin.did}/presence"))[0] == 404


# -- #9: forks logged, both documents kept, bounded -----------------------------------------

def forked(whole: dict[str, Any], me: Identity, url: str) -> dict[str, Any]:
    """The same presence seq with other bytes, and its slices re-made for it: all signed by ``me``."""
    pres = sign_document({**whole["presence"], "url": url}, me.keys)
    slices = [sign_document({**s, "presence_digest": doc_digest(pres)}, me.keys) for s in whole["slices"]]
    return {**whole, "presence": pres, "slices": slices}


async def test_a_fork_is_refused_logged_and_both_documents_kept(relay: tuple[Home, Identity, Any, str],
                                                                tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    a_home, alice, _, url = relay
    b_home, bob = peer(tmp_path, "bob", a_home, alice, url)
    whole = loads_canonical(bundle(b_home, bob))
    assert (await post(url, bob, whole))[0] == 200
    accepted = (await get(f"{url}/relay/{bob.did}/presence"))[1]

    fork = forked(whole, bob, "http://elsewhere.example:7733")
    with logged(caplog, "hn.relay") as events:
        status, answer = await post(url, bob, fork)
        assert status == 409 and answer["error"] == "fork", answer
        [record] = events("relay.fork")
    info = record.hn  # type: ignore[attr-defined]
    assert info["did"] == bob.did and info["seq"] == whole["presence"]["seq"]
    assert info["accepted"] == doc_digest(whole["presence"]) and info["refused"] == doc_digest(fork["presence"])
    assert info["evidence_problem"] is None
    folder = a_home.path("sync", "forks", did_tail(bob.did))
    kept = sorted(p.read_bytes() for p in folder.iterdir() if not p.name.startswith("."))
    assert kept == sorted([accepted, canonical(fork["presence"])])
    assert sorted(str(p) for p in folder.iterdir()) == sorted(info["evidence"])
    # The relay still serves the presence it accepted.
    assert (await get(f"{url}/relay/{bob.did}/presence")) == (200, accepted)

    # A hostile publisher forking again and again: every fork refused and logged, the
    # evidence kept stays within its cap.
    caplog.clear()
    with logged(caplog, "hn.relay") as events:
        for n in range(FORK_FILES_PER_DID + 2):
            status, _ = await post(url, bob, forked(whole, bob, f"http://fork{n}.example:7733"))
            assert status == 409
        logged_forks = events("relay.fork")
    assert len(logged_forks) == FORK_FILES_PER_DID + 2
    assert len([p for p in folder.iterdir() if not p.name.startswith(".")]) == FORK_FILES_PER_DID
    assert "fork evidence" in logged_forks[-1].hn["evidence_problem"]  # type: ignore[attr-defined]
    assert accepted in {p.read_bytes() for p in folder.iterdir()}  # the first evidence stays


# -- #13: expiry logged whichever path removes the record -------------------------------------

def hn_json(home: Home, *args: str) -> Any:
    """`hn ... --json` in this process (so it sees the test's clock)."""
    from hn.cli.app import main

    out = io.StringIO()
    argv = ["hn", "--home", str(home.root), *args, "--json"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        old, sys.argv = sys.argv, argv
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        finally:
            sys.argv = old
    return json.loads(out.getvalue())


async def test_expiry_is_logged_when_a_read_removes_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(relay_plugin, "PRUNE_EVERY", 3600.0)  # the pruner runs once, at start
    a_home, alice = make_person(tmp_path, "alice")
    node, url = await start_node(a_home, relay_ttl=60)
    try:
        b_home, bob = peer(tmp_path, "bob", a_home, alice, url)
        [pushed] = await relay_push.push(b_home, bob)
        assert pushed["ok"] is True, pushed
        assert [r["did"] for r in hn_json(a_home, "mcp", "relay", "list")["relayed"]] == [bob.did]

        later = timefmt.now() + 120
        monkeypatch.setattr(timefmt, "now", lambda: later)
        caplog.set_level(logging.INFO, logger="hn.relay")
        with logged(caplog, "hn.relay") as events:
            # relay list leaves the expired record out, and leaves its removal to the node
            assert hn_json(a_home, "mcp", "relay", "list")["relayed"] == []
            assert (a_home.path("cache", "relay", did_tail(bob.did)) / "record.json").exists()
            assert events("relay.expire") == []
            assert (await get(f"{url}/relay/{bob.did}/presence"))[0] == 404
            [record] = events("relay.expire")
            assert record.hn["did"] == bob.did and record.hn["by"] == "read"  # type: ignore[attr-defined]
            assert (await get(f"{url}/relay/{bob.did}/presence"))[0] == 404
            assert len(events("relay.expire")) == 1  # logged once, when removed
    finally:
        await node.stop()


async def test_expiry_is_logged_by_the_pruner(relay: tuple[Home, Identity, Any, str], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    a_home, alice, node, url = relay
    b_home, bob = peer(tmp_path, "bob", a_home, alice, url)
    [pushed] = await relay_push.push(b_home, bob)
    assert pushed["ok"] is True, pushed
    caplog.set_level(logging.INFO, logger="hn.relay")
    with logged(caplog, "hn.relay") as events:
        assert node.ctx.extras["relay_store"].prune(timefmt.now() + 10 ** 7) == [bob.did]
        [record] = events("relay.expire")
    assert record.hn["by"] == "pruner"  # type: ignore[attr-defined]


# -- #12: the push body cap as the spec states it -----------------------------------------------

def test_openapi_states_the_push_cap_the_node_enforces() -> None:
    spec = json.loads(SPEC.read_text("utf-8"))
    text = spec["paths"]["/relay/{did}/presence"]["post"]["requestBody"]["description"]
    [stated] = re.findall(r"At most (\d+) bytes", text)
    assert int(stated) == relay_plugin.MAX_PUSH
    relay_md = (SPEC.parent / "relay@1.md").read_text("utf-8")
    assert f"at most {relay_plugin.MAX_PUSH // (1024 * 1024)} MiB" in relay_md


async def test_an_index_of_several_slices_is_accepted_whole_and_refused_with_a_gap(
        relay: tuple[Home, Identity, Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_home, alice, _, url = relay
    b_home, bob = peer(tmp_path, "bob", a_home, alice, url)
    for n in range(3):
        note = tmp_path / f"note{n}.md"
        note.write_text(f"note {n}\n")
        store.add_files(b_home, bob.keys, [note], publish=True)
    monkeypatch.setattr(relay_push, "MAX_SLICE_ENTRIES", 1)  # one entry a slice: several slices
    whole = loads_canonical(bundle(b_home, bob))
    assert len(whole["slices"]) >= 3
    status, answer = await post(url, bob, {**whole, "slices": whole["slices"][:1] + whole["slices"][2:]})
    assert status == 400 and "must follow each other" in answer["detail"], answer
    status, answer = await post(url, bob, {**whole, "slices": whole["slices"][:-1]})
    assert status == 400, answer
    status, answer = await post(url, bob, whole)
    assert status == 200 and answer["slices"] == len(whole["slices"]), answer
    cursor, seen = "0", 0
    for _ in range(len(whole["slices"])):
        status, raw = await get(f"{url}/relay/{bob.did}/index?cursor={cursor}")
        assert status == 200
        item = loads_canonical(raw)
        seen += len(item["entries"])
        if not item["more"]:
            break
        cursor = item["next_cursor"]
    assert seen == 3


# -- a relay keeps up with its pusher: a rotated key, a friends-only index ------------------

async def test_a_key_rotated_while_the_node_was_off_is_learnt_from_the_push(
        relay: tuple[Home, Identity, Any, str], tmp_path: Path) -> None:
    a_home, url, b_home, bob = bob_publishing(relay, tmp_path)
    status, answer = await post(url, bob, loads_canonical(bundle(b_home, bob)))
    assert status == 200, answer
    rotated = identities.rotate(b_home)
    status, answer = await post(url, rotated, loads_canonical(bundle(b_home, rotated)))
    assert status == 200, answer  # signed with key 1, which key 0 vouches for in the pushed history
    known = identities.known_history(a_home, bob.did)
    assert known is not None and len(known.keys) == 2
    # An old key cannot sign for the identity any more.
    status, answer = await post(url, bob, loads_canonical(bundle(b_home, rotated)), keys=bob.keys)
    assert status == 401, answer


async def test_a_friends_only_index_is_relayed_to_its_friends_only(relay: tuple[Home, Identity, Any, str],
                                                                  tmp_path: Path) -> None:
    from hn.federation import roster

    a_home, url, b_home, bob = bob_publishing(relay, tmp_path)
    _, carol = make_person(tmp_path, "carol")  # bob's friend, known to the relay
    _, dora = make_person(tmp_path, "dora")  # known to the relay, not bob's friend
    for other in (carol, dora):
        identities.import_contact(a_home, canonical(other.doc))
    roster.add(b_home, carol.did, "http://127.0.0.1:9")
    policy.set_policy(b_home, "federation.mode", "friends")
    whole = loads_canonical(bundle(b_home, bob))
    assert whole["readers"] == [carol.did]
    status, answer = await post(url, bob, whole)
    assert status == 200, answer
    index = f"{url}/relay/{bob.did}/index?cursor=0"
    assert (await get(f"{url}/relay/{bob.did}/presence"))[0] == 200  # still discoverable by anyone
    assert (await get(index))[0] == 401

    async def signed(who: Identity) -> int:
        async with aiohttp.ClientSession() as session, \
                session.get(index, headers=sign_request(who.keys, "GET", index, b"")) as resp:
            return resp.status

    assert await signed(dora) == 403
    assert await signed(carol) == 200
    # The same index made public again is served to anyone.
    policy.set_policy(b_home, "federation.mode", "public")
    whole = loads_canonical(bundle(b_home, bob))
    assert "readers" not in whole
    status, answer = await post(url, bob, whole)
    assert status == 200, answer
    assert (await get(index))[0] == 200
