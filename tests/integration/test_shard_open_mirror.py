"""A shard mirrored from a friend's node opens every time, not only the first (after the
first open it is in the catalogue, but its file stays in the mirror); a prefix matching
shards of more than one friend is refused, naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hn.errors import InputError, NotFound
from hn.smoke.harness import Harness, Peer
from hn.vault import shards
from hn.vault.home import Home

pytestmark = pytest.mark.timeout(180)


def test_a_mirrored_shard_opens_again(harness: Harness, tmp_path: Path) -> None:
    h = harness
    alice, bob = h.add_people("alice", "bob")
    h.start_node(alice, dht=False)
    h.hn_json(bob, "mcp", "federate", "add", alice.did, alice.url)
    h.hn_json(alice, "id", "import", str(_export(h, bob, tmp_path)))
    note = tmp_path / "secret.txt"
    note.write_text("for bob only\n")
    doc = h.hn_json(alice, "doc", "add", str(note))["added"][0]["id"]
    shard = h.hn_json(alice, "doc", "share", doc, "--to", bob.did)["id"]
    assert h.hn_json(bob, "mcp", "federate", "refresh", "--mirror")["ok"] is True
    for n, ref in enumerate((shard, shard, shard[:8])):
        out = tmp_path / f"open{n}.txt"
        opened = h.hn_json(bob, "doc", "open", ref, "--out", str(out))
        assert opened["id"] == shard and out.read_text() == "for bob only\n"
    assert not (bob.home / "shards" / shard[:2] / f"{shard}.shard").exists()  # the mirror's copy was used
    # The mirror gone, the catalogue entry stays: one clear line saying where to get the file again.
    mirrored = bob.home / "cache" / "federation" / alice.did[7:] / "artifacts" / "shard" / shard
    mirrored.unlink()
    gone = h.hn(bob, "doc", "open", shard, "--out", str(tmp_path / "gone.txt"), check=False)
    lines = gone.stderr.strip().splitlines()
    assert gone.returncode == 1 and len(lines) == 1 and "federate refresh --mirror" in lines[0], gone.stderr
    assert "No such file" not in lines[0]


def _export(h: Harness, who: Peer, tmp_path: Path) -> Path:
    path = tmp_path / "bob.id.json"
    h.hn(who, "id", "export", "--out", str(path))
    return path


def _mirror(home: Home, peer_tail: str, *ids: str) -> None:
    folder = home.path("cache", "federation", peer_tail, "artifacts", "shard")
    folder.mkdir(parents=True, exist_ok=True)
    for shard_id in ids:
        (folder / shard_id).write_bytes(b"shard " + shard_id.encode())


def test_an_ambiguous_prefix_across_mirrors_is_refused_naming_the_shards(home: Home) -> None:
    one, two = "abcdef01" + "0" * 56, "abcdef02" + "0" * 56
    _mirror(home, "a" * 32, one)
    _mirror(home, "b" * 32, two, "c" * 64)
    _mirror(home, "b" * 32, ".mirror-tmp-abcdef")  # a download under way is not a shard
    with pytest.raises(InputError) as refused:
        shards.find_shard(home, "abcdef")
    message = refused.value.message
    assert "ambiguous" in message and one in message and two in message
    assert f"did:hn:{'a' * 32}" in message and f"did:hn:{'b' * 32}" in message
    assert shards.find_shard(home, "abcdef01").name == one
    assert shards.find_shard(home, two.upper()).name == two
    # The same shard mirrored from two friends (a relay and its publisher) is one shard.
    _mirror(home, "a" * 32, "c" * 64)
    assert shards.find_shard(home, "cccccc").name == "c" * 64
    with pytest.raises(NotFound):
        shards.find_shard(home, "abcde")  # too short
    with pytest.raises(NotFound):
        shards.find_shard(home, "dddddd")
