"""What a user may get wrong with the vault-core commands, through the real `hn` entry point:
one clear `error:` line and nothing changed, or a sound result."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from tests.support import hn_env, introduced, run_hn, run_json, share_a_note, tree_digest, vault_with_notes


def refused(home: Path, *args: str, input: str | None = None, expect: str = "") -> str:
    """The one `error:` line of a command that must fail (exit 1 or 2), without a traceback."""
    proc = run_hn(home, *args, input=input, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode in (1, 2) and proc.stdout == "", (args, proc.returncode, proc.stdout)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], (args, proc.stderr)
    assert "internal error" not in lines[0], lines[0]
    return lines[0]


def shares_of(home: Path, *args: str) -> list[str]:
    return list(run_json(home, "id", "recovery", "split", "-k", "2", "-n", "3", *args)["shares"])


def test_an_alias_is_checked_whole(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    before = tree_digest(home)
    # A trailing newline (a name pasted with its line end) is no alias, nor a folder name.
    line = refused(home, "id", "create", "bob\n", expect="invalid alias")
    assert "start with a letter or a digit" in line
    refused(home, "id", "create", ".hidden", expect="start with a letter or a digit")
    assert tree_digest(home) == before
    shares = shares_of(home)
    before = tree_digest(home)
    refused(tmp_path / "new", "id", "recovery", "restore", "--alias", "carol\n", input="\n".join(shares),
            expect="invalid alias")
    assert tree_digest(home) == before
    assert sorted(p.name for p in (home / "identities" / "own").iterdir()) == ["alice"]
    assert [i["alias"] for i in run_json(home, "id", "list")["identities"]] == ["alice"]


def test_an_endless_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    shares = "\n".join(shares_of(home)) + "\n"
    before = tree_digest(home)

    def limited() -> None:  # what reading /dev/zero to its end would need, it does not get
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    for args, given in ((["id", "import", "/dev/zero"], None),
                        (["id", "recovery", "restore", "--alias", "again", "--identity", "/dev/zero"], shares)):
        proc = subprocess.run([sys.executable, "-m", "hn", *args], input=given, capture_output=True, text=True,
                              timeout=120, env=hn_env(home), preexec_fn=limited)
        assert proc.returncode == 1 and proc.stdout == "", (args, proc.stderr)
        assert proc.stderr.startswith("error: /dev/zero is larger than") and "internal" not in proc.stderr, proc.stderr
    assert tree_digest(home) == before


def test_restore_reads_a_bounded_utf8_standard_input(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    # A file of 2 MB given by mistake: one short line, not the whole of it echoed back.
    line = refused(tmp_path / "a", "id", "recovery", "restore", input="x" * (2 << 20), expect="more than")
    assert len(line) < 200
    proc = subprocess.run([sys.executable, "-m", "hn", "id", "recovery", "restore"], input=b"\xff\xfe shares\n",
                          capture_output=True, timeout=120, env=hn_env(tmp_path / "b"))
    assert proc.returncode == 1 and proc.stderr.decode().startswith("error: standard input is not UTF-8 text")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_passphrase_slip39_cannot_hold_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    before = tree_digest(home)
    line = refused(home, "id", "recovery", "split", "--passphrase", "pässwörd", expect="printable ASCII")
    assert "internal" not in line
    assert run_hn(home, "id", "recovery", "split", "--passphrase", "pässwörd", check=False).returncode == 2
    assert tree_digest(home) == before  # no split recorded
    # No split could have used it: a restore with it would rebuild a stranger's identity.
    shares = "\n".join(shares_of(home))
    refused(tmp_path / "new", "id", "recovery", "restore", "--passphrase", "pässwörd", input=shares,
            expect="printable ASCII")
    assert not (tmp_path / "new").exists()


def test_a_wrong_passphrase_with_the_identity_document_says_what_may_be_wrong(tmp_path: Path) -> None:
    home = tmp_path / "v"
    did = run_json(home, "id", "create", "alice")["did"]
    shares = "\n".join(shares_of(home, "--passphrase", "right horse"))
    run_hn(home, "id", "export", "--out", str(tmp_path / "alice.json"))
    line = refused(tmp_path / "new", "id", "recovery", "restore", "--passphrase", "wrong horse",
                   "--identity", str(tmp_path / "alice.json"), input=shares, expect=did)
    assert "passphrase" in line
    restored = run_json(tmp_path / "new2", "id", "recovery", "restore", "--passphrase", "right horse",
                        "--identity", str(tmp_path / "alice.json"), input=shares)
    assert restored["did"] == did


def test_a_file_name_that_is_not_utf8_is_added(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name\n")  # a name from an old disk
    (folder / "plain.txt").write_bytes(b"plain\n")
    added = run_json(home, "doc", "add", str(folder))
    assert sorted(a["name"] for a in added["added"]) == ["caf\ufffd.txt", "plain.txt"]
    assert sorted(d["name"] for d in run_json(home, "doc", "list")["artefacts"]) == ["caf\ufffd.txt", "plain.txt"]
    # The human output names the file as it is (its bytes) and ends well.
    shown = subprocess.run([sys.executable, "-m", "hn", "doc", "add", str(folder)], capture_output=True,
                           timeout=120, env=hn_env(home))
    assert shown.returncode == 0 and b"caf\xe9.txt: same content as" in shown.stdout, shown
    assert run_json(home, "vault", "verify")["ok"] is True


def test_publishing_what_is_so_already_records_nothing(tmp_path: Path) -> None:
    home = vault_with_notes(tmp_path, 1)  # never published
    doc = run_json(home, "doc", "list")["artefacts"][0]["id"]
    events = len(list((home / "events").iterdir()))
    cursor = run_json(home, "vault", "status")["index"]["cursor"]
    # Unpublishing a document never published would list its id in the index as a
    # tombstone, telling peers this vault holds that content.
    out = run_json(home, "doc", "unpublish", doc[:8])
    assert out["changed"] == [] and out["artefacts"][0]["published"] is False
    assert "0 document(s); 1 was unpublished already" in run_hn(home, "doc", "unpublish", doc).stdout
    assert len(list((home / "events").iterdir())) == events
    assert run_json(home, "vault", "status")["index"]["cursor"] == cursor
    assert run_json(home, "doc", "publish", doc)["changed"] == [doc]
    assert run_json(home, "doc", "publish", doc, doc[:10])["changed"] == []
    assert run_json(home, "doc", "unpublish", doc)["changed"] == [doc]
    assert run_json(home, "vault", "verify")["ok"] is True


def test_verify_fails_on_a_missing_or_renamed_event_file(tmp_path: Path) -> None:
    home = vault_with_notes(tmp_path, 1)
    files = sorted((home / "events").iterdir())
    last = files[-1]
    # The chain is whole, but no command finds the entry under its new name.
    moved = last.with_name(f"{len(files) + 2:012d}.json")
    last.rename(moved)
    assert "does not match its name" in refused(home, "vault", "status")
    proc = run_hn(home, "vault", "verify", "--json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    [failed] = report["failed"]
    assert failed["check"] == "event_log" and f"events/{last.name} is missing" in failed["detail"]
    moved.rename(last)
    assert run_json(home, "vault", "verify")["ok"] is True


def test_verify_names_every_damaged_artefact_and_a_stray_contact_file(tmp_path: Path) -> None:
    alice, _bob, bob_did = introduced(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (docs / name).write_text(f"{name}\n")
    added = run_json(alice, "doc", "add", str(docs))["added"]
    objects = {a["name"]: alice / "personal" / "objects" / a["id"][:2] / a["id"] for a in added}
    with open(objects["a.txt"], "ab") as handle:
        handle.write(b"x")
    objects["c.txt"].unlink()
    (alice / "identities" / "contacts" / "notes.json").write_text("{}")
    proc = run_hn(alice, "vault", "verify", "--json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    failed = {c["check"]: c["detail"] for c in json.loads(proc.stdout)["failed"]}
    assert set(failed) == {"artefacts", "contacts"}
    assert failed["artefacts"].startswith("2 of 3 artefacts failed")
    assert f"{objects['a.txt'].relative_to(alice)}: artefact" in failed["artefacts"]
    assert "does not match its digest" in failed["artefacts"] and "is missing" in failed["artefacts"]
    assert failed["contacts"].startswith("identities/contacts/notes.json: ")
    assert bob_did  # the real contact beside it verified


def test_id_export_takes_json(tmp_path: Path) -> None:
    home = tmp_path / "v"
    shown = run_json(home, "id", "create", "alice")
    doc = run_json(home, "id", "export")
    assert doc["type"] == "identity@1"
    out = tmp_path / "alice.json"
    wrote = json.loads(run_hn(home, "id", "export", "--out", str(out), "--json").stdout)
    assert wrote == {"out": str(out), "alias": "alice", "did": shown["did"], "keys": 1,
                     "identity_digest": shown["identity_digest"]}
    assert json.loads(out.read_text()) == doc


def test_doc_open_says_what_is_not_a_shard_file(tmp_path: Path) -> None:
    alice, bob, bob_did = introduced(tmp_path)
    run_hn(alice, "id", "export", "--out", str(tmp_path / "alice.json"))
    run_hn(bob, "id", "import", str(tmp_path / "alice.json"))
    _doc, shard = share_a_note(alice, bob_did, tmp_path)
    before = tree_digest(bob)
    out = str(tmp_path / "out.txt")
    refused(bob, "doc", "open", str(tmp_path), "--out", out, expect=f"{tmp_path}: not a shard file (a folder)")
    refused(bob, "doc", "open", "/dev/null", "--out", out, expect="not a shard file (a character device)")
    refused(bob, "doc", "open", str(tmp_path / "gone.shard"), "--out", out, expect="gone.shard: no such file")
    assert run_hn(bob, "doc", "open", "", "--out", out, check=False).returncode == 2
    assert tree_digest(bob) == before and not Path(out).exists()
    # The shard file itself, and an id prefix of one mirrored, still open.
    shard_file = alice / "shards" / shard[:2] / f"{shard}.shard"
    assert run_json(bob, "doc", "open", str(shard_file), "--out", out)["id"] == shard


def test_restore_takes_more_shares_than_needed_and_names_mixed_sets(tmp_path: Path) -> None:
    home = tmp_path / "v"
    did = run_json(home, "id", "create", "alice")["did"]
    first, second = shares_of(home), shares_of(home)  # "Any 2 of these": the user keeps all 3
    assert run_json(tmp_path / "a", "id", "recovery", "restore", input="\n".join(first))["did"] == did
    assert run_json(tmp_path / "b", "id", "recovery", "restore", input="\n".join(second[::-1] + second[:1]))["did"] == did
    refused(tmp_path / "c", "id", "recovery", "restore", input="\n".join([first[0], second[1]]),
            expect="not all of one split")
    refused(tmp_path / "c", "id", "recovery", "restore", input=first[0], expect="could not recover")
    assert not (tmp_path / "c").exists()


def test_a_missing_active_identity_or_key_file_is_named(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    run_json(home, "id", "create", "work")
    (home / "config" / "vault.toml").write_text('active = "gone"\n')  # a hand edit, or a folder removed
    before = tree_digest(home)
    for args in (("id", "show"), ("vault", "status", "--json"), ("id", "rotate")):
        line = refused(home, *args, expect="the active identity 'gone' (config/vault.toml) is not in this vault")
        assert "hn id use ALIAS" in line
    assert tree_digest(home) == before
    assert run_json(home, "id", "use", "work")["alias"] == "work"
    secret = home / "identities" / "own" / "work" / "secret.json"
    secret.rename(secret.with_name("secret.json.bak"))
    line = refused(home, "id", "show", expect="key file of 'work' cannot be read")
    assert line.endswith(f"({secret}): No such file or directory")
