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
from hn.smoke.harness import Harness

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
