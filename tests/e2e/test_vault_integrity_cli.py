"""Integrity of the vault's own files through the real `hn` entry point."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import hn_env, introduced, run_hn, run_json

# `hn doc add` killed with SIGKILL in the middle of copying a file: the hasher kills the
# process when the second block arrives.
KILLED_ADD = """
import os, signal, sys
import hn.vault.store as store

class Hasher:
    calls = 0
    def update(self, data):
        Hasher.calls += 1
        if Hasher.calls > 1:
            os.kill(os.getpid(), signal.SIGKILL)
    def hexdigest(self):
        raise AssertionError("never reached")

store.READ_BLOCK = 1024
store.blake3 = type("fake", (), {"blake3": Hasher})
from hn.cli.app import main
sys.argv = ["hn", "--home", sys.argv[1], "doc", "add", sys.argv[2]]
main()
"""


def test_a_killed_doc_add_is_noted_by_verify_and_swept_by_the_next_add(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8192))
    proc = subprocess.run([sys.executable, "-c", KILLED_ADD, str(home), str(big)], env=hn_env(home),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    objects = home / "personal" / "objects"
    [left] = [p for p in objects.iterdir() if p.name.startswith(".add.")]
    checked = run_json(home, "vault", "verify")
    assert checked["ok"] is True
    assert any(f"personal/objects/{left.name}" in n and "next `hn doc add` removes" in n for n in checked["notes"])
    human = run_hn(home, "vault", "verify")
    assert "note" in human.stdout and left.name in human.stdout
    # an add running in another process: its temp file is locked, and must survive
    running = objects / ".add.running"
    with open(running, "wb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        note = tmp_path / "n.txt"
        note.write_text("note\n")
        run_json(home, "doc", "add", str(note))
        assert sorted(p.name for p in objects.iterdir() if p.name.startswith(".add.")) == [".add.running"]
        assert run_json(home, "vault", "verify")["notes"] == []
    running.unlink()
    assert json.loads(run_hn(home, "vault", "verify", "--json").stdout)["notes"] == []


def test_a_damaged_catalogue_is_rebuilt_from_the_event_log(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    note = tmp_path / "a.txt"
    note.write_text("a\n")
    doc = run_json(home, "doc", "add", str(note))["added"][0]
    cache = home / "personal" / "catalog.json"
    good = json.loads(cache.read_bytes())

    def damage() -> None:
        raw = cache.read_bytes()
        assert b'"digest":' in raw
        cache.write_bytes(raw.replace(b'"digest":', b'"digewt":'))

    damage()
    checked = run_hn(home, "vault", "verify", "--json", check=False)
    assert checked.returncode == 1
    [failed] = json.loads(checked.stdout)["failed"]
    assert failed["check"] == "catalog" and "personal/catalog.json is damaged" in failed["detail"]
    listed = run_hn(home, "doc", "list", "--json")
    assert [a["name"] for a in json.loads(listed.stdout)["artefacts"]] == ["a.txt"]
    assert listed.stderr.startswith("warning: personal/catalog.json was damaged")
    assert "rebuilt from the event log" in listed.stderr and "Traceback" not in listed.stderr
    assert json.loads(cache.read_bytes()) == good
    assert run_hn(home, "doc", "list", "--json").stderr == ""
    assert run_json(home, "vault", "verify")["ok"] is True
    other = tmp_path / "b.txt"
    other.write_text("b\n")
    for args in (("vault", "status"), ("doc", "add", str(other)), ("id", "rotate")):
        damage()
        proc = run_hn(home, *args, "--json", check=False)
        assert proc.returncode == 0 and "rebuilt from the event log" in proc.stderr, (args, proc.stderr)
    assert {a["id"] for a in run_json(home, "doc", "list")["artefacts"]} >= {doc["id"]}
    assert run_json(home, "vault", "verify")["ok"] is True


def failures(home: Path) -> list[str]:
    proc = run_hn(home, "vault", "verify", "--json", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: vault verification failed: ")
    return [f["detail"] for f in json.loads(proc.stdout)["failed"]]


def test_verify_names_the_file_of_every_failure_and_leaves_caches_alone(tmp_path: Path) -> None:
    home, bob, bob_did = introduced(tmp_path)
    note = tmp_path / "n.txt"
    note.write_text("note\n")
    doc = run_json(home, "doc", "add", str(note), "--publish")["added"][0]
    run_json(home, "vault", "backup", "create")
    backup_cache = home / "sync" / "backup-cache.json"
    registry = home / "sync" / "backups.json"
    assert backup_cache.is_file() and registry.is_file()
    # The backup caches are disposable: damaged, they are a note, not a failed vault.
    for cache in (backup_cache, registry):
        cache.write_bytes(cache.read_bytes()[:7])
    checked = run_json(home, "vault", "verify")
    assert checked["ok"] is True
    assert [n.split(" ")[0] for n in checked["notes"]] == ["sync/backup-cache.json", "sync/backups.json"]
    assert "next backup reads every file" in checked["notes"][0]

    [presence] = (home / "presence").glob("*.json")
    contact = home / "identities" / "contacts" / f"{bob_did[7:]}.json"
    obj = home / "personal" / "objects" / doc["id"][:2] / doc["id"]
    for path in (presence, contact):
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])  # truncated: not valid JSON
        [detail] = failures(home)
        assert detail.startswith(str(path.relative_to(home)) + ": "), detail
        path.unlink()
        path.mkdir()  # a folder in place of the file
        [detail] = failures(home)
        assert detail == f"{path.relative_to(home)}: is a folder, not a file", detail
        path.rmdir()
        path.write_bytes(good)
    obj.rename(tmp_path / "object")
    obj.mkdir()
    [detail] = failures(home)
    assert detail == f"{obj.relative_to(home)}: is a folder, not a file"
    obj.rmdir()
    (tmp_path / "object").rename(obj)
    assert run_json(home, "vault", "verify")["ok"] is True


def test_verify_checks_the_config_every_command_reads(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    run_json(home, "policy", "set", "trust.max_age", "3600")
    checked = run_json(home, "vault", "verify")
    assert checked["ok"] is True and checked["checks"][0] == {
        "check": "config", "ok": True, "detail": "2 config files parse (policy.toml, vault.toml)"}
    config = home / "config" / "vault.toml"
    good = config.read_bytes()
    config.write_bytes(good.replace(b"=", b"", 1))
    assert "vault.toml is not valid TOML" in run_hn(home, "id", "show", check=False).stderr
    [detail] = failures(home)
    assert detail.startswith("config/vault.toml: is not valid TOML (")
    config.write_bytes(b'active = "bob"\n')
    assert failures(home) == ["config/vault.toml: the active identity 'bob' is not in this vault (`hn id use ALIAS`)"]
    config.write_bytes(good)
    policies = home / "config" / "policy.toml"
    policies.write_bytes(policies.read_bytes().replace(b'"3600"', b'"soon"'))
    assert failures(home) == ["config/policy.toml: policy trust.max_age: trust.max_age takes a positive whole number"]


def test_a_missing_vault_is_one_clear_error_and_is_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    note = tmp_path / "n.txt"
    note.write_text("n\n")
    expected = (f"error: no vault at {typo}: run `hn id create ALIAS` first, "
                "or give --home (or $HN_HOME) the folder of an existing vault")
    commands = [("id", "list"), ("id", "show"), ("id", "rotate"), ("policy", "show"), ("vault", "status"),
                ("vault", "verify"), ("doc", "list"), ("doc", "add", str(note)), ("trust", "link", "list"),
                ("trust", "graph"), ("status",)]
    for args in commands:
        proc = run_hn(None, "--home", str(typo), *args, check=False)
        assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (1, expected, ""), args
        assert not typo.exists(), args
    # through $HN_HOME as well
    proc = run_hn(typo, "id", "list", "--json", check=False)
    assert (proc.returncode, proc.stderr.strip()) == (1, expected)
    assert not typo.exists()
    # the commands that start a vault still do
    assert run_json(typo, "policy", "set", "trust.max_age", "60")["value"] == "60"
    assert run_json(typo, "id", "list") == {"identities": []}


def test_the_same_content_twice_keeps_its_first_name_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    a, copy = tmp_path / "a.txt", tmp_path / "copy_of_a.txt"
    a.write_text("same bytes\n")
    copy.write_text("same bytes\n")
    first = run_json(home, "doc", "add", str(a))
    assert [(f["outcome"], f["name"]) for f in first["files"]] == [("new", "a.txt")]
    head = len(list((home / "events").iterdir()))
    again = run_hn(home, "doc", "add", str(copy))
    assert again.stdout.splitlines() == [
        "added 0 document(s)", f"{copy}: same content as a.txt (already in the vault); it keeps the name a.txt"]
    assert len(list((home / "events").iterdir())) == head, "content already there is no change to the vault"
    assert [d["name"] for d in run_json(home, "doc", "list")["artefacts"]] == ["a.txt"]
    # one file named twice (directly and through its folder) is one document
    sub = tmp_path / "files" / "sub"
    sub.mkdir(parents=True)
    (sub / "b.md").write_text("b\n")
    both = run_hn(home, "doc", "add", str(sub), str(sub / "b.md"))
    assert both.stdout.splitlines() == ["added 1 document(s)"]
    # two new files with the same bytes in one add: the first names the document
    (sub / "c1.txt").write_text("c\n")
    (sub / "c2.txt").write_text("c\n")
    pair = run_json(home, "doc", "add", str(sub / "c1.txt"), str(sub / "c2.txt"), "--publish")
    assert [(v["name"], v["new"], v["published"]) for v in pair["added"]] == [("c1.txt", True, True)]
    assert [f["outcome"] for f in pair["files"]] == ["new", "same_as_file"]
    assert pair["files"][1]["same_as"] == str(sub / "c1.txt")
    # --publish publishes content already in the vault, under its name
    published = run_json(home, "doc", "add", str(copy), "--publish")
    assert [(v["name"], v["published"], v["new"]) for v in published["added"]] == [("a.txt", True, False)]
    doc_id = first["added"][0]["id"]
    out = run_json(home, "doc", "unpublish", doc_id, doc_id[:10], doc_id)
    assert [v["id"] for v in out["artefacts"]] == [doc_id]


def test_what_is_not_a_regular_file_is_named_and_skipped_entries_are_reported(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a\n")
    os.mkfifo(files / "fifo")
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the folder\n")
    (files / "link").symlink_to(outside)
    # a FIFO named on the command line: said what it is (it exists), nothing waits on it
    proc = run_hn(home, "doc", "add", str(files / "fifo"), check=False)
    assert (proc.returncode, proc.stderr.strip()) == (
        1, f"error: {files / 'fifo'}: not a regular file (a FIFO); nothing was added")
    # a folder: its link and FIFO are skipped, and both outputs say so
    added = run_json(home, "doc", "add", str(files))
    assert [f["file"] for f in added["files"]] == [str(files / "a.txt")]
    assert added["skipped"] == [{"path": str(files / "fifo"), "reason": "a FIFO"},
                                {"path": str(files / "link"), "reason": "a symbolic link"}]
    human = run_hn(home, "doc", "add", str(files)).stdout.splitlines()
    assert human[-1] == (f"skipped 2 entries that are not a regular file: {files / 'fifo'} (a FIFO), "
                         f"{files / 'link'} (a symbolic link)")
    # a symbolic link named on the command line is followed, as cp does (and as help says)
    via_link = run_json(home, "doc", "add", str(files / "link"))
    assert [(v["name"], v["size"]) for v in via_link["added"]] == [("link", outside.stat().st_size)]
    assert "symbolic link named here is followed" in " ".join(run_hn(home, "doc", "add", "--help").stdout.split())
    (tmp_path / "broken").symlink_to(tmp_path / "missing")
    proc = run_hn(home, "doc", "add", str(tmp_path / "broken"), check=False)
    assert proc.stderr.strip() == f"error: {tmp_path / 'broken'}: a symbolic link to a missing file"
    only = tmp_path / "only"
    only.mkdir()
    os.mkfifo(only / "f")
    proc = run_hn(home, "doc", "add", str(only), check=False)
    assert proc.stderr.strip() == f"error: no files to add: skipped 1 entry that is not a regular file: {only / 'f'} (a FIFO)"


def test_a_folder_in_place_of_a_key_or_event_file_is_named(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    for path in (home / "identities" / "own" / "alice" / "identity.json", sorted((home / "events").iterdir())[-1]):
        path.rename(tmp_path / "aside")
        path.mkdir()
        details = failures(home)
        path.rmdir()
        (tmp_path / "aside").rename(path)
        assert details[0] in (f"{path.relative_to(home)}: is a folder, not a file",
                              f"event log entry {path.name} is a folder, not a file"), details
        assert all("Errno" not in d for d in details), details
    assert run_json(home, "vault", "verify")["ok"] is True
