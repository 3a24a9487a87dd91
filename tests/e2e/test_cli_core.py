"""The vault core through the real `hn` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import run_hn, run_json, tree_digest


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path, str, str]:
    a, b = tmp_path / "a", tmp_path / "b"
    alice = run_json(a, "id", "create", "alice")
    bob = run_json(b, "id", "create", "bob")
    return a, b, alice["did"], bob["did"]


def test_identity_commands(tmp_path: Path) -> None:
    home = tmp_path / "v"
    shown = run_json(home, "id", "create", "alice")
    assert shown["did"].startswith("did:hn:") and shown["active"] is True and shown["key_seq"] == 0
    run_json(home, "id", "create", "work")
    listing = run_json(home, "id", "list")["identities"]
    assert [i["alias"] for i in listing] == ["alice", "work"]
    assert [i["active"] for i in listing] == [True, False]
    assert run_json(home, "id", "use", "work")["alias"] == "work"
    show = run_json(home, "id", "show")
    for key in ("alias", "did", "key_seq", "signing_public_key", "hpke_public_key"):
        assert key in show
    rotated = run_json(home, "id", "rotate")
    assert rotated["key_seq"] == 1 and rotated["signing_public_key"] != show["signing_public_key"]
    out = tmp_path / "work.identity.json"
    run_hn(home, "id", "export", "--out", str(out))
    doc = json.loads(out.read_text())
    assert doc["type"] == "identity@1" and len(doc["keys"]) == 2


def test_documents_share_and_open(two: tuple[Path, Path, str, str], tmp_path: Path) -> None:
    a, b, alice, bob = two
    note = tmp_path / "notes.md"
    note.write_text("# hello\n")
    added = run_json(a, "doc", "add", str(note), "--publish")["added"][0]
    assert added["digest"] == added["id"] and added["published"] and added["type"] == "text/markdown"
    listed = run_json(a, "doc", "list")["artefacts"]
    assert [d["id"] for d in listed] == [added["id"]]
    # sharing needs the recipient's identity@1
    failed = run_hn(a, "doc", "share", added["id"][:8], "--to", bob, check=False)
    assert failed.returncode == 1 and "unknown identity" in failed.stderr and "Traceback" not in failed.stderr
    run_hn(b, "id", "export", "--out", str(tmp_path / "bob.json"))
    run_hn(a, "id", "import", str(tmp_path / "bob.json"))
    shard = run_json(a, "doc", "share", added["id"][:8], "--to", bob)
    shard_file = a / "shards" / shard["id"][:2] / f"{shard['id']}.shard"
    status = run_json(a, "vault", "status")
    assert status["counts"]["shards"] == 1 and status["index"]["size"] == 2
    # bob opens it once he knows alice
    run_hn(a, "id", "export", "--out", str(tmp_path / "alice.json"))
    run_hn(b, "id", "import", str(tmp_path / "alice.json"))
    opened = run_json(b, "doc", "open", str(shard_file), "--out", str(tmp_path / "got.md"))
    assert (tmp_path / "got.md").read_text() == "# hello\n" and opened["sender"] == alice
    # alice cannot open a shard meant for bob
    before = tree_digest(a)
    own = run_hn(a, "doc", "open", str(shard_file), "--out", str(tmp_path / "x.md"), check=False)
    assert own.returncode == 1 and "addressed to" in own.stderr
    # a truncated shard: clear error, nothing written
    cut = tmp_path / "cut.shard"
    cut.write_bytes(shard_file.read_bytes()[:-10])
    bad = run_hn(b, "doc", "open", str(cut), "--out", str(tmp_path / "y.md"), check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and not (tmp_path / "y.md").exists()
    assert tree_digest(a) == before
    assert run_json(a, "vault", "verify")["ok"] is True
    assert run_json(b, "vault", "verify")["ok"] is True


def test_recovery_after_rotation(tmp_path: Path) -> None:
    home = tmp_path / "orig"
    created = run_json(home, "id", "create", "alice")
    run_hn(home, "id", "rotate")
    current = run_json(home, "id", "show")
    shares = run_json(home, "id", "recovery", "split", "--threshold", "3", "--shares", "5")["shares"]
    assert len(shares) == 5
    ident = tmp_path / "alice.identity.json"
    run_hn(home, "id", "export", "--out", str(ident))
    three = "\n".join([shares[4], shares[1], shares[2]]) + "\n"
    full = run_json(tmp_path / "new1", "id", "recovery", "restore", "--identity", str(ident), input=three)
    assert full["did"] == created["did"] and full["key_seq"] == 1
    assert full["signing_public_key"] == current["signing_public_key"]
    assert full["hpke_public_key"] == current["hpke_public_key"]
    bare = run_json(tmp_path / "new2", "id", "recovery", "restore", input=three)
    assert bare["did"] == created["did"] and bare["key_seq"] == 0 and bare["history_complete"] is False
    original = json.loads(ident.read_text())["keys"][0]
    rebuilt = json.loads(run_hn(tmp_path / "new2", "id", "export").stdout)["keys"][0]
    assert rebuilt == original, "the genesis key entry of a recovered identity must equal the original"
    two = "\n".join(shares[:2]) + "\n"
    short = run_hn(tmp_path / "new3", "id", "recovery", "restore", input=two, check=False)
    assert short.returncode == 1 and "could not recover" in short.stderr


def test_bad_input_is_one_line_and_changes_nothing(two: tuple[Path, Path, str, str], tmp_path: Path) -> None:
    a, _b, _alice, _bob = two
    empty = tmp_path / "empty"
    for args in (("id", "show"), ("doc", "list"), ("doc", "add", str(tmp_path / "nope.txt"))):
        proc = run_hn(empty, *args, check=False)
        assert proc.returncode != 0 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    before = tree_digest(a)
    cases = [
        ("id", "use", "nobody"),
        ("doc", "share", "abcdef", "--to", "did:hn:notadid"),
        ("doc", "open", "deadbeef00", "--out", str(tmp_path / "o")),
        ("id", "import", str(tmp_path / "missing.json")),
        ("id", "create", "../evil"),
    ]
    for args in cases:
        proc = run_hn(a, *args, check=False)
        assert proc.returncode in (1, 2), args
        assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:"), (args, proc.stderr)
    assert tree_digest(a) == before
    # a document signed by another key: identity file tampered
    ident = next((a / "identities" / "own" / "alice").glob("identity.json"))
    raw = ident.read_bytes()
    ident.write_bytes(raw.replace(b'"alias":"alice"', b'"alias":"alicf"'))
    proc = run_hn(a, "doc", "list", check=False)
    proc = run_hn(a, "id", "show", check=False)
    assert proc.returncode == 1 and "tampered" in proc.stderr
    ident.write_bytes(raw)
    secret = a / "identities" / "own" / "alice" / "secret.json"
    good = secret.read_bytes()
    secret.write_bytes(b"{not json")
    proc = run_hn(a, "id", "rotate", check=False)
    assert proc.returncode == 1 and "key file" in proc.stderr
    secret.write_bytes(good)
    assert tree_digest(a) == before


def test_verify_detects_a_flipped_byte_anywhere(two: tuple[Path, Path, str, str], tmp_path: Path) -> None:
    a, _b, _alice, _bob = two
    note = tmp_path / "n.txt"
    note.write_text("some text to protect\n")
    run_json(a, "doc", "add", str(note), "--publish")
    assert run_json(a, "vault", "verify")["ok"] is True
    targets = [p for p in a.rglob("*") if p.is_file() and p.suffix in ("", ".json") and p.name not in (".lock",)
               and "config" not in p.parts]
    targets = [p for p in targets if p.parent.name != "personal" or p.name != "catalog.json"] + [a / "personal" / "catalog.json"]
    assert any("events" in p.parts for p in targets) and any("objects" in p.parts for p in targets)
    for path in targets:
        raw = path.read_bytes()
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        proc = run_hn(a, "vault", "verify", "--json", check=False)
        path.write_bytes(raw)
        assert proc.returncode != 0, f"flipped byte in {path.relative_to(a)} not detected"
        assert json.loads(proc.stdout)["ok"] is False
    assert run_json(a, "vault", "verify")["ok"] is True


def test_every_command_has_help() -> None:
    groups = [(), ("id",), ("id", "recovery"), ("doc",), ("vault",), ("mcp",), ("mcp", "federate"), ("policy",)]
    for group in groups:
        proc = run_hn(None, *group, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout
        in_commands = False
        for line in proc.stdout.splitlines():
            if "Commands" in line:
                in_commands = True
                continue
            if in_commands and line.startswith("│ "):
                parts = line.strip("│ ").split(None, 1)
                assert len(parts) == 2 and parts[1].strip(), f"hn {' '.join(group)} {parts[0]} has no help text"
    assert os.environ.get("HN_HOME") is None or True


def test_commands_that_seal_nothing_do_not_load_pyhpke() -> None:
    # Loading pyhpke costs every command ~20 ms; only HPKE work (backups, shards) needs it.
    code = ("import sys; import hn.cli.app, hn.cli.context, hn.vault.home, hn.vault.identities; "
            "print('pyhpke' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
