"""What one refresh takes from a friend is bounded, and one bad artefact costs only itself:
bob's real node behind a proxy that rewrites its answers, with slices properly signed by
bob, so every refusal below is one the signature checks cannot make."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hn.federation import service, sync
from hn.federation.cache import peer_dir
from hn.proto import timefmt
from hn.proto.canonical import canonical, loads_canonical
from hn.proto.index import build_slice, parse_cursor
from hn.smoke.harness import Harness, Peer
from hn.vault import identities
from hn.vault.home import Home
from tests.integration.hostile import Proxy


def bob_with_notes(h: Harness, tmp: Path, count: int) -> tuple[Peer, Peer]:
    alice, bob = h.add_people("alice", "bob")
    for i in range(count):
        note = tmp / f"note-{i}.md"
        note.write_text(f"bob's note {i}\n")
        h.hn_json(bob, "doc", "add", str(note), "--publish")
    h.start_node(bob, dht=False)
    return alice, bob


@contextlib.contextmanager
def bob_behind_a_proxy(h: Harness, tmp: Path, notes: int) -> Iterator[tuple[Peer, Peer, Proxy]]:
    """alice federated with bob's node (``notes`` published) through a rewriting proxy."""
    alice, bob = bob_with_notes(h, tmp, notes)
    proxy = Proxy(bob.url).start()
    try:
        h.hn_json(alice, "mcp", "federate", "add", bob.did, proxy.url)
        yield alice, bob, proxy
    finally:
        proxy.stop()


def forging(bob: Peer, make: Callable[[dict[str, Any]], tuple[str, bool, list[dict[str, Any]]]],
            seen: list[str]) -> Callable[[str, int, bytes], tuple[int, bytes]]:
    """A proxy rewrite: every index slice replaced by one bob signs, with the next cursor,
    the more flag and the entries ``make`` gives for the slice asked."""
    keys = identities.load(Home(bob.home)).keys

    def rewrite(path: str, status: int, body: bytes) -> tuple[int, bytes]:
        if path != "/federate/index" or status != 200:
            return status, body
        doc = loads_canonical(body)
        seen.append(doc["cursor"])
        live = json.loads(urllib.request.urlopen(bob.url + "/.well-known/hn/presence").read())
        next_cursor, more, entries = make(doc)
        return 200, canonical(build_slice(keys, bob.url, live, doc["cursor"], next_cursor, more, entries,
                                          timefmt.now_iso()))
    return rewrite


def fake_doc(n: int) -> dict[str, Any]:
    digest = os.urandom(32).hex()
    return {"type": "doc", "id": digest, "path": f"doc/{digest}", "digest": digest, "size": n, "metadata": {}}


def test_one_bad_artefact_costs_only_itself(harness: Harness, tmp_path: Path) -> None:
    h = harness
    with bob_behind_a_proxy(h, tmp_path, 3) as (alice, bob, proxy):
        docs = sorted(a["id"] for a in h.hn_json(bob, "doc", "list")["artefacts"])
        bad = docs[1]
        proxy.mutate = lambda path, status, body: (status, body[:-1] + bytes([body[-1] ^ 1])) \
            if path == f"/artifact/doc/{bad}" else (status, body)
        result = h.hn(alice, "mcp", "federate", "refresh", "--mirror", "--json", check=False)
        assert result.returncode == 1, result.stdout
        row = json.loads(result.stdout)["peers"][0]
        assert row["ok"] is False and row["entries"] == 3 and row["mirrored"] == 2 and row["mirror_failed"] == 1
        assert f"1 artefact(s) not mirrored: artefact {bad[:16]}… does not match its digest" in row["error"], row
        mirror = peer_dir(Home(alice.home), bob.did) / "artifacts" / "doc"
        assert sorted(p.name for p in mirror.iterdir()) == [d for d in docs if d != bad]
        listed = next(p for p in h.hn_json(alice, "mcp", "federate", "list")["peers"] if p["did"] == bob.did)
        assert listed["health"] == "failing" and listed["root"] is not None  # the index itself was kept
        # Served right again, the one left is mirrored and nothing else is fetched twice.
        proxy.mutate = lambda path, status, body: (status, body)
        again = h.hn_json(alice, "mcp", "federate", "refresh", "--mirror")["peers"][0]
        assert again["ok"] is True and again["mirrored"] == 1, again
        assert sorted(p.name for p in mirror.iterdir()) == docs
        folder = peer_dir(Home(alice.home), bob.did)
        assert list(folder.glob("index-*.json")) and not list(folder.glob(".incoming-*"))


def test_a_slice_that_says_more_but_stays_put_is_refused_at_once(harness: Harness, tmp_path: Path) -> None:
    h = harness
    seen: list[str] = []
    with bob_behind_a_proxy(h, tmp_path, 1) as (alice, bob, proxy):
        proxy.mutate = forging(bob, lambda doc: (doc["cursor"], True, [fake_doc(1)]), seen)
        result = h.hn(alice, "mcp", "federate", "refresh", "--json", check=False)
        assert result.returncode == 1
        assert "says more follows but does not move past it" in json.loads(result.stdout)["peers"][0]["error"]
        assert seen == ["0"]  # one request, not ten thousand
        assert not list(peer_dir(Home(alice.home), bob.did).glob(".incoming-*"))


def test_a_refresh_takes_in_a_bounded_number_of_changes(harness: Harness, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Validly signed slices that page on and on, far past the presence's index size, are
    refused once they exceed twice that size plus EXTRA_CHANGES (lowered here to 5)."""
    seen: list[str] = []

    def endless(doc: dict[str, Any]) -> tuple[str, bool, list[dict[str, Any]]]:
        seq, _ = parse_cursor(doc["cursor"])
        return str(seq + 1), True, [fake_doc(1) for _ in range(3)]

    monkeypatch.setattr(sync, "EXTRA_CHANGES", 5)
    with bob_behind_a_proxy(harness, tmp_path, 1) as (alice, bob, proxy):
        proxy.mutate = forging(bob, endless, seen)
        rows = asyncio.run(service.refresh(Home(alice.home)))
        assert rows[0]["ok"] is False
        assert "more than 7 index changes in one refresh" in rows[0]["error"], rows[0]
        assert len(seen) == 3  # 3, 6, then 9 changes: refused there
        folder = peer_dir(Home(alice.home), bob.did)
        assert not list(folder.glob(".incoming-*")) and not list(folder.glob("index-*.json"))


def test_a_forked_presence_is_refused_and_both_documents_kept(harness: Harness, tmp_path: Path) -> None:
    from hn.proto.signed import sign_document

    h = harness
    with bob_behind_a_proxy(h, tmp_path, 1) as (alice, bob, proxy):
        assert h.hn_json(alice, "mcp", "federate", "refresh")["ok"] is True
        keys = identities.load(Home(bob.home)).keys
        live = json.loads(urllib.request.urlopen(bob.url + "/.well-known/hn/presence").read())
        # Same seq, other bytes, properly signed by bob: a fork.
        forked = canonical(sign_document({**live, "url": live["url"] + "/elsewhere"}, keys))
        proxy.mutate = lambda path, status, body: (status, forked) if path.endswith("/presence") else (status, body)
        result = h.hn(alice, "mcp", "federate", "refresh", "--json", check=False)
        assert result.returncode == 1 and "fork" in json.loads(result.stdout)["peers"][0]["error"]
        kept = sorted((Path(alice.home) / "sync" / "forks").rglob("presence@2-*.json"))
        assert sorted(p.read_bytes() for p in kept) == sorted([canonical(live), forked])
