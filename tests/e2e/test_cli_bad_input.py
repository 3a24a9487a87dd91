"""Bad input through the real entry point: one `error:` line, non-zero exit, vault unchanged."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hn.proto.canonical import canonical
from hn.proto.identity import build_identity, make_key_entry
from hn.proto.keys import IdentityKeys
from hn.proto.signed import sign_document
from tests.support import run_hn, run_json, tree_digest


def refused(home: Path, *args: str, expect: str = "") -> str:
    proc = run_hn(home, *args, check=False)
    assert proc.returncode != 0, args
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
    assert "Traceback" not in proc.stderr and expect in lines[0], (args, proc.stderr)
    return lines[0]


def test_contact_rollback_fork_and_foreign_signature(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_json(a, "id", "create", "alice")
    bob = run_json(b, "id", "create", "bob")
    v0, v1 = tmp_path / "bob0.json", tmp_path / "bob1.json"
    run_hn(b, "id", "export", "--out", str(v0))
    run_hn(b, "id", "rotate")
    run_hn(b, "id", "export", "--out", str(v1))
    assert run_json(a, "id", "import", str(v1))["keys"] == 2
    before = tree_digest(a)
    refused(a, "id", "import", str(v0), expect="rolled back")
    # a fork: same secret, key 1 re-made with another date (what a thief of key 0 could do)
    secret = json.loads((b / "identities" / "own" / "bob" / "secret.json").read_text())["secret"]
    keys0 = IdentityKeys(base64.b64decode(secret), 0)
    keys1 = IdentityKeys(keys0.secret, 1)
    genesis = json.loads(v0.read_text())["keys"][0]
    entries = [genesis, make_key_entry(keys1, 1, "2031-01-01T00:00:00Z", genesis)]
    fork = tmp_path / "fork.json"
    fork.write_bytes(canonical(build_identity(keys1, "bob", entries, "2031-01-01T00:00:00Z")))
    refused(a, "id", "import", str(fork), expect="forks")
    # bob's identity re-signed by another key
    stranger = IdentityKeys(bytes(32), 0)
    forged = sign_document(json.loads(v1.read_text()), stranger)
    (tmp_path / "forged.json").write_bytes(canonical(forged))
    refused(a, "id", "import", str(tmp_path / "forged.json"))
    # the same document with one signature byte changed
    tampered = json.loads(v1.read_text())
    tampered["alias"] = "bobby"
    (tmp_path / "tampered.json").write_bytes(canonical(tampered))
    refused(a, "id", "import", str(tmp_path / "tampered.json"), expect="signature")
    (tmp_path / "dup.json").write_bytes(b'{"type":"identity@1","type":"identity@1"}')
    refused(a, "id", "import", str(tmp_path / "dup.json"), expect="duplicate key")
    assert tree_digest(a) == before
    pinned = a / "identities" / "contacts" / f"{bob['did'][7:]}.json"
    assert json.loads(pinned.read_bytes()) == json.loads(v1.read_text())


def test_corrupted_event_log_stops_every_writer(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_json(a, "id", "create", "alice")
    bob = run_json(b, "id", "create", "bob")
    run_hn(b, "id", "export", "--out", str(tmp_path / "bob.json"))
    run_hn(a, "id", "import", str(tmp_path / "bob.json"))
    note = tmp_path / "n.txt"
    note.write_text("note\n")
    doc_id = run_json(a, "doc", "add", str(note))["added"][0]["id"]
    last = sorted((a / "events").glob("*.json"))[-1]
    event = json.loads(last.read_bytes())
    event["issued_at"] = "2020-01-01T00:00:00Z"  # canonical, parses, only the signature tells
    last.write_bytes(canonical(event))
    before = tree_digest(a)
    other = tmp_path / "m.txt"
    other.write_text("more\n")
    for args in (("doc", "add", str(other)), ("id", "rotate"), ("doc", "share", doc_id, "--to", bob["did"]),
                 ("id", "create", "second"), ("id", "recovery", "split")):
        refused(a, *args, expect="event log")
    assert "event" in refused(a, "vault", "verify")
    assert tree_digest(a) == before
    # an unreadable entry is just as clear
    last.write_bytes(b"\xff\xfe not json")
    refused(a, "doc", "list", expect="unreadable")
    refused(a, "doc", "add", str(other), expect="unreadable")


def test_a_bad_peer_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    home = tmp_path / "a"
    run_json(home, "id", "create", "alice")
    before = tree_digest(home)
    refused(home, "mcp", "federate", "add", "notadid", "http://127.0.0.1:9", expect="not a did:hn DID: 'notadid'")
    refused(home, "mcp", "federate", "add", "did:hn:" + "a" * 32, "ftp://127.0.0.1/",
            expect="peer URL: only http and https URLs are allowed")
    assert tree_digest(home) == before


def test_a_bad_backup_target_or_id_is_refused_before_any_work(tmp_path: Path) -> None:
    home = tmp_path / "a"
    run_json(home, "id", "create", "alice")
    before = tree_digest(home)
    refused(home, "vault", "backup", "create", "--target", "did:hn:x", "--push-url", "http://127.0.0.1:9",
            expect="--target must be the DID of the node meant to hold the backup, not 'did:hn:x'")
    refused(home, "vault", "backup", "restore", "--from", "http://127.0.0.1:9", "--id", "../../etc",
            "--into", str(tmp_path / "r"), expect="--id must be a backup id (32 lowercase hex characters)")
    assert tree_digest(home) == before and not (tmp_path / "r").exists()


def test_a_payload_given_for_a_header_names_the_header(tmp_path: Path) -> None:
    home = tmp_path / "a"
    run_json(home, "id", "create", "alice")
    made = run_json(home, "vault", "backup", "create")
    header = Path(made["header"]).name
    for command in (["verify"], ["decrypt", "--out", str(tmp_path / "x.tar.zst")],
                    ["restore", "--into", str(tmp_path / "r")]):
        refused(home, "vault", "backup", *command, "--path", made["payload"],
                expect=f"is a backup's payload; give its header, {header}, which sits beside it")
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.tar.zst").exists()


def test_an_empty_home_is_refused_not_taken_as_the_current_folder(tmp_path: Path) -> None:
    # run_hn runs in home.parent, here tmp_path: an empty --home must not make a vault there.
    home = tmp_path / "vault"
    for args in (("id", "create", "alice"), ("id", "list", "--json")):
        refused(home, "--home", "", *args, expect="--home is empty")
        proc = run_hn(home, "--home", " ", *args, check=False)
        assert proc.returncode == 2 and "--home is empty" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_relay_entry_edited_into_nonsense_is_left_out_of_the_presence(tmp_path: Path) -> None:
    from hn.proto.presence import check_presence
    from hn.vault import presence
    from hn.vault.home import Home

    home = tmp_path / "vault"
    me = run_json(home, "id", "create", "alice")
    good = {"type": "relay@1", "did": "did:hn:" + "r" * 32, "url": "http://127.0.0.1:9/",
            "expires_at": "2099-01-01T00:00:00Z"}
    bad = [{**good, "did": "did:hn:" + "s" * 32, "expires_at": "soon"}, {**good, "did": "not-a-did"},
           {**good, "did": "did:hn:" + "t" * 32, "url": "ftp://x"}]
    Home(home).write_toml("node.toml", {"relays": [good, *bad]})
    note = tmp_path / "n.md"
    note.write_text("n\n")
    run_json(home, "doc", "add", str(note), "--publish")  # signs a new presence
    signed = presence.current(Home(home), me["did"])
    assert signed is not None and signed["relays"] == [good]
    check_presence(signed)  # what every peer checks: the bad entries would have failed it


@pytest.mark.parametrize(("args", "expect"), [
    (("mcp", "serve", "--relay-ttl", "abc"), "Invalid value for '--relay-ttl': 'abc' is not a valid int"),
    (("vault", "backup", "create", "--bogus"), "No such option: --bogus"),
    (("id", "create"), "Missing argument 'alias'"),
    (("vault", "backup", "prune"), "Missing option '--keep'"),
])
def test_option_and_argument_mistakes_are_one_error_line(tmp_path: Path, args: tuple[str, ...], expect: str) -> None:
    proc = run_hn(tmp_path / "vault", *args, check=False)
    command = "hn " + " ".join(a for a in args if not a.startswith("-") and a != "abc")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {expect}"), proc.stderr
    assert proc.stderr.endswith(f" (see `{command} --help`)\n"), proc.stderr


def test_a_group_without_its_command_still_shows_its_help(tmp_path: Path) -> None:
    proc = run_hn(tmp_path / "vault", "vault", "backup", check=False)
    assert proc.returncode == 2 and "Usage: hn vault backup" in proc.stdout and "prune" in proc.stdout
