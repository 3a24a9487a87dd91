"""Backups over real nodes: push to a friend's node, lose the machine, recover from SLIP-39
shares, pull the backup chain back and swap the vault into place.

Nodes are `hn mcp serve` processes on 127.0.0.1 with ports chosen at run time; every
user step is the `hn` command.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import blake3
import pytest

from hn.backup.snapshot import EXCLUDED_FILES
from hn.smoke.harness import Harness, free_port

pytestmark = pytest.mark.timeout(240)


def _tree(root: Path) -> dict[str, str]:
    """path -> BLAKE3 of every file a backup covers."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        top = rel.split("/", 1)[0]
        if not path.is_file() or top in ("cache", "backups", "hosted", "run", ".lock") or rel in EXCLUDED_FILES:
            continue
        if rel.endswith((".sqlite3", "-wal", "-shm")):
            continue
        out[rel] = blake3.blake3(path.read_bytes()).hexdigest()
    return out


def test_lost_machine_restore_from_friends_node(harness: Harness, tmp_path: Path) -> None:
    alice, bob, carol = harness.add_people("alice", "bob", "carol")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"note-{i}.txt").write_text(f"note {i} " * (i * 50 + 1))
    harness.hn(alice, "doc", "add", str(docs), "--publish")
    harness.hn(alice, "id", "rotate")  # the backup is sealed to key 1: recovery must derive it
    shares = harness.hn_json(alice, "id", "recovery", "split", "--threshold", "2", "--shares", "3")["shares"]
    (alice.home / "config" / "scratch.toml").write_text("x = 1\n")

    harness.start_node(bob, dht=False)
    harness.start_node(alice, dht=False)
    harness.hn(bob, "mcp", "federate", "add", alice.did, alice.url)

    full = harness.hn_json(alice, "vault", "backup", "create", "--push-url", bob.url, "--target", bob.did)
    assert full["pushed"]["status"]["complete"] is True
    # A backup held for each other is evidence for trust links, on both sides.
    held = harness.hn_json(bob, "trust", "link", "derive", "--to", alice.did, "--evidence", f"backup:{full['id']}")
    assert held["evidence_count"] == 1
    pushed = harness.hn_json(alice, "trust", "link", "derive", "--to", bob.did, "--evidence", f"backup:{full['id']}")
    assert pushed["evidence_count"] == 1
    # A backup that stays on the laptop: the next pushed delta must not build on it.
    harness.hn_json(alice, "vault", "backup", "create")
    # A delta for a node that holds nothing yet is refused, with what to do instead.
    refused = harness.hn(carol, "vault", "backup", "create", "--scope", "delta", "--push-url", bob.url, check=False)
    assert refused.returncode != 0 and "push a full backup there first" in refused.stderr
    # A change after the full backup: one new document, one deleted file.
    (docs / "late.txt").write_text("written after the full backup")
    harness.hn(alice, "doc", "add", str(docs / "late.txt"))
    (alice.home / "config" / "scratch.toml").unlink()
    delta = harness.hn_json(alice, "vault", "backup", "create", "--scope", "delta", "--push-url", bob.url,
                            "--target", bob.did)
    assert delta["scope"] == "delta" and delta["base_backup"] == full["id"]
    assert 0 < delta["stored"] < delta["entries"]
    listed = harness.hn_json(alice, "vault", "backup", "list", "--from", bob.url)
    assert [b["id"] for b in listed["remote"]["backups"]] == [full["id"], delta["id"]]
    chains = {b["id"]: b["chain"] for b in listed["backups"]}
    assert chains[delta["id"]] == [delta["id"], full["id"]]

    harness.stop_node(alice)
    reference = _tree(alice.home)
    # The log's last event records the delta's push, which happened after its snapshot.
    last = max(k for k in reference if k.startswith("events/"))
    assert json.loads((alice.home / last).read_text())["kind"] == "backup.push"
    del reference[last]
    shutil.rmtree(alice.home)  # the laptop is gone
    alice.home.mkdir()

    # Someone else's vault cannot open it, and says which key it needs.
    refused = harness.hn(carol, "vault", "backup", "restore", "--from", bob.url, "--id", delta["id"],
                         "--into", str(carol.home.parent / "carol-restore"), "--owner", alice.did, check=False)
    assert refused.returncode != 0 and "key 1" in refused.stderr and alice.did in refused.stderr

    recovered = harness.hn_json(alice, "id", "recovery", "restore", "--alias", "alice",
                                input="\n".join(shares[:2]) + "\n")
    assert recovered["did"] == alice.did and recovered["key_seq"] == 0
    out = harness.hn_json(alice, "vault", "backup", "restore", "--from", bob.url, "--id", "latest",
                          "--into", str(alice.home))
    assert out["id"] == delta["id"] and out["chain"] == [full["id"], delta["id"]]
    assert out["merkle_root"] == delta["merkle_root"]

    assert _tree(alice.home) == reference  # bit for bit, deleted file included
    assert not (alice.home / "config" / "scratch.toml").exists()
    harness.hn(alice, "vault", "verify")
    shown = harness.hn_json(alice, "id", "show")
    assert shown["did"] == alice.did and shown["key_seq"] == 1  # key history came back too
    # Nothing is left beside the vault: no staging, no journal, no download.
    assert sorted(p.name for p in alice.home.parent.iterdir() if p.name.startswith(".")) == []


def test_push_resumes_an_upload_and_sends_the_bases_the_node_lacks(harness: Harness, tmp_path: Path) -> None:
    """`hn vault backup push`: a backup made without --push-url, or whose upload broke off,
    reaches the friend's node later; a delta takes its missing bases along, oldest first."""
    import asyncio
    import os

    from hn.backup import client
    from hn.proto.canonical import canonical
    from hn.vault import identities
    from hn.vault.home import Home

    alice, bob = harness.add_people("alice", "bob")
    (alice.home / "personal").mkdir(exist_ok=True)
    (alice.home / "personal" / "big.bin").write_bytes(os.urandom(3 << 20))
    harness.start_node(bob, dht=False)
    exported = tmp_path / "alice.identity.json"
    harness.hn(alice, "id", "export", "--out", str(exported))
    harness.hn(bob, "id", "import", str(exported))

    # The upload dies: a friend's node nobody can reach. The error says how to resume.
    dead = f"http://127.0.0.1:{free_port()}"
    failed = harness.hn(alice, "vault", "backup", "create", "--push-url", dead, check=False)
    assert failed.returncode == 1 and "`hn vault backup push --id " in failed.stderr, failed.stderr
    full_id = failed.stderr.split("hn vault backup push --id ")[1].split()[0]
    (alice.home / "personal" / "late.txt").write_text("after the full backup\n")
    delta = harness.hn_json(alice, "vault", "backup", "create", "--scope", "delta")
    assert delta["base_backup"] == full_id

    # The first MiB of the full backup's 3 MiB payload reaches bob, then the connection drops.
    header = json.loads((alice.home / "backups" / f"{full_id}.backup.json").read_bytes())
    payload = alice.home / "backups" / f"{full_id}.backup.payload"
    keys = identities.load(Home(alice.home)).keys

    async def first_segment() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            await client._signed(session, keys, "POST", f"{bob.url}/backup", canonical(header))
            with open(payload, "rb") as src:
                await client._signed(session, keys, "PUT", f"{bob.url}/backup/{full_id}/blob?offset=0",
                                     src.read(1 << 20))

    asyncio.run(first_segment())
    out = harness.hn_json(alice, "vault", "backup", "push", "--id", delta["id"], "--url", bob.url)
    assert [p["id"] for p in out["pushed"]] == [full_id, delta["id"]]
    assert all(p["status"]["complete"] for p in out["pushed"])
    listed = harness.hn_json(alice, "vault", "backup", "list", "--from", bob.url)
    assert [b["id"] for b in listed["remote"]["backups"]] == [full_id, delta["id"]]
    assert {b["id"]: [p["url"] for p in b["pushed"]] for b in listed["backups"]} == \
        {full_id: [bob.url], delta["id"]: [bob.url]}
    held = bob.home / "hosted" / "backups"
    assert (next(held.rglob(f"{full_id}.backup.payload"))).read_bytes() == payload.read_bytes()
    # Both pushes are in the signed log, for trust links to cite.
    events = [json.loads(p.read_text()) for p in sorted((alice.home / "events").glob("*.json"))]
    assert [e["data"]["id"] for e in events if e["kind"] == "backup.push"] == [full_id, delta["id"]]
    # Pushing again sends nothing.
    again = harness.hn_json(alice, "vault", "backup", "push", "--url", bob.url)
    assert again["already_there"] and again["pushed"] == [] and again["id"] == delta["id"]
    # A newer delta goes alone: its bases are there already.
    (alice.home / "personal" / "later.txt").write_text("after the delta\n")
    newer = harness.hn_json(alice, "vault", "backup", "create", "--scope", "delta")
    assert newer["base_backup"] == delta["id"]
    out = harness.hn_json(alice, "vault", "backup", "push", "--url", bob.url)
    assert [p["id"] for p in out["pushed"]] == [newer["id"]]
