"""`hn vault backup create` keeps its own house in order: no other writer's temp file in a
backup, no payload temp file left behind by a killed create, absolute paths in the local
registry, and a backup recorded even when the change-detection cache cannot be written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import hn_env, run_hn, run_json, vault_with_notes


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    return vault_with_notes(tmp_path, 4, lines=40)


def test_temp_files_of_other_hn_writers_are_not_backed_up(vault: Path, tmp_path: Path) -> None:
    # What `doc add`, `doc share` and a mirroring sync hold while they write: mkstemp
    # files beside their targets, renamed into place only when whole.
    in_progress = {
        "personal/objects/.add.k2j4x9q1": b"half of a large document",
        "shards/.seal.a8d0_3zq": b"half of a sealed shard",
        "cache/mirror/.mirror.0p9o8i7u": b"half of a friend's artefact",
        "personal/.catalog.json.x1y2z3w4.tmp": b"half of a catalog",
    }
    for rel, data in in_progress.items():
        (vault / rel).parent.mkdir(parents=True, exist_ok=True)
        (vault / rel).write_bytes(data)
    # A dot-file of the vault's own that only looks alike is still backed up.
    (vault / "personal" / ".added").write_bytes(b"kept")
    full = run_json(vault, "vault", "backup", "create", "--include-cache", "--out", str(tmp_path / "bk"))
    paths = {e["path"] for e in json.loads(Path(full["header"]).read_bytes())["entries"]}
    assert not paths & set(in_progress), sorted(paths & set(in_progress))
    assert "personal/.added" in paths and "personal/catalog.json" in paths
    run_hn(vault, "vault", "verify")


# Runs `hn ARGS` and stops it part-way through writing the payload, until a line comes on
# stdin: "writing" after the first encrypted bytes reach the temp file, "naming" once the
# whole payload is written and only the rename to the backup's id is left, "header" once
# the payload has its id's name and only the header is left to write.
PAUSED_HN = r"""
import os, sys
from hn.backup import create
from hn.cli.app import main

where = sys.argv[1]


def pause():
    print("paused", flush=True)
    sys.stdin.readline()


if where == "writing":
    real_encrypt = create.chunked.encrypt_stream

    class Direct:
        def __init__(self, sink):
            self.fd, self.paused = sink.fd, False

        def write(self, data):
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            if not self.paused:
                self.paused = True
                pause()
            return len(data)

    create.chunked.encrypt_stream = lambda cipher, src, dst, *rest: real_encrypt(cipher, src, Direct(dst), *rest)
elif where == "header":
    real_write = create.atomic.write_bytes

    def write_bytes(path, *args, **kwargs):
        if str(path).endswith(".backup.json"):
            pause()
        return real_write(path, *args, **kwargs)

    create.atomic.write_bytes = write_bytes
else:
    real_seal = create.proto.seal

    def seal(*args, **kwargs):
        pause()
        return real_seal(*args, **kwargs)

    create.proto.seal = seal
sys.argv = ["hn", *sys.argv[2:]]
main()
"""


def paused_create(home: Path, out: Path, where: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_HN, where, "vault", "backup", "create", "--out", str(out),
                             "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=hn_env(home), cwd=str(home.parent))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "paused\n":
        proc.kill()
        raise AssertionError(f"the create did not pause: {line!r} {proc.communicate()}")
    return proc


def incoming(out: Path) -> dict[str, int]:
    """A payload being written: "..incoming-<hex>.backup.payload.<random>.tmp" (the atomic
    write's temp file of ".incoming-<hex>.backup.payload"), then that name until it takes
    the backup's id."""
    return {p.name: p.stat().st_size for p in out.iterdir() if p.name.startswith((".incoming-", "..incoming-"))}


@pytest.mark.parametrize("where", ["writing", "naming"])
def test_a_killed_create_s_payload_temp_is_swept_and_a_running_one_s_is_kept(
        vault: Path, tmp_path: Path, where: str) -> None:
    out = tmp_path / "bk"
    running = paused_create(vault, out, where)
    try:
        held = incoming(out)
        killed = paused_create(vault, out, where)
        killed.kill()
        killed.communicate()
        left = {name: size for name, size in incoming(out).items() if name not in held}
        assert len(held) == len(left) == 1 and all(left.values()), (held, left)
        if where == "naming":
            assert all(name.endswith(".backup.payload") for name in left)
        else:
            assert all(name.endswith(".tmp") for name in left)

        # The next create removes what the killed one left, and says how much that was;
        # the one still running keeps its file.
        after = run_json(vault, "vault", "backup", "create", "--out", str(out))
        assert after["reclaimed_bytes"] == sum(left.values())
        assert incoming(out) == held
        assert "reclaimed_bytes" not in run_json(vault, "vault", "backup", "create", "--out", str(out))
    finally:
        stdout, stderr = running.communicate("\n")
    assert running.returncode == 0, stderr
    finished = json.loads(stdout)
    assert incoming(out) == {}
    assert run_json(vault, "vault", "backup", "verify", "--path", finished["header"])["ok"]
    listed = [b["id"] for b in run_json(vault, "vault", "backup", "list")["backups"]]
    assert finished["id"] in listed and after["id"] in listed


def headerless(out: Path) -> dict[str, int]:
    """Payloads named after a backup id with no header beside them."""
    return {p.name: p.stat().st_size for p in out.glob("*.backup.payload")
            if not p.with_name(p.name.replace(".backup.payload", ".backup.json")).exists()}


def test_a_payload_named_but_never_committed_is_swept_once_its_create_is_gone(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "bk"
    running = paused_create(vault, out, "header")
    try:
        held = headerless(out)
        killed = paused_create(vault, out, "header")
        killed.kill()
        killed.communicate()
        left = {name: size for name, size in headerless(out).items() if name not in held}
        assert len(held) == len(left) == 1 and all(left.values()), (held, left)
        after = run_json(vault, "vault", "backup", "create", "--out", str(out))
        assert after["reclaimed_bytes"] == sum(left.values())
        assert headerless(out) == held
        # A committed backup's payload, and a file the user keeps there, are not leftovers.
        (out / "notes.backup.payload").write_bytes(b"mine")
        assert "reclaimed_bytes" not in run_json(vault, "vault", "backup", "create", "--out", str(out))
        assert headerless(out) == {**held, "notes.backup.payload": 4}
        assert Path(after["payload"]).exists()
    finally:
        stdout, stderr = running.communicate("\n")
    assert running.returncode == 0, stderr
    finished = json.loads(stdout)
    assert headerless(out) == {"notes.backup.payload": 4}
    assert run_json(vault, "vault", "backup", "verify", "--path", finished["header"])["ok"]
    assert run_json(vault, "vault", "backup", "verify", "--path", after["header"])["ok"]


def test_the_human_output_says_what_was_reclaimed(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "bk"
    out.mkdir()
    (out / "..incoming-0123456789abcdef.backup.payload.k2j4x9q1.tmp").write_bytes(b"x" * 5000)
    shown = run_hn(vault, "vault", "backup", "create", "--out", str(out)).stdout
    assert "5000 bytes" in shown and "reclaimed" in shown, shown
    assert incoming(out) == {}


def hn_from(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hn", *args], capture_output=True, text=True, timeout=120,
                          env=hn_env(home), cwd=str(cwd))


def test_a_relative_out_is_recorded_as_an_absolute_path(vault: Path, tmp_path: Path) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    here = here.resolve()
    made = hn_from(here, vault, "vault", "backup", "create", "--out", "relbk", "--json")
    assert made.returncode == 0, made.stderr
    full = json.loads(made.stdout)
    assert full["header"] == str(here / "relbk" / f"{full['id']}.backup.json")
    assert full["payload"] == str(here / "relbk" / f"{full['id']}.backup.payload")
    # From another folder the backup is still found: listed as local, and a delta builds on it.
    listed = json.loads(hn_from(elsewhere, vault, "vault", "backup", "list", "--json").stdout)["backups"]
    assert [(b["id"], b["local"], b["header"]) for b in listed] == [(full["id"], True, full["header"])]
    (vault / "personal" / "later.txt").write_text("after the full backup\n")
    delta = hn_from(elsewhere, vault, "vault", "backup", "create", "--scope", "delta", "--out", "../here/relbk",
                    "--json")
    assert delta.returncode == 0, delta.stderr
    assert json.loads(delta.stdout)["base_backup"] == full["id"]
    assert json.loads(delta.stdout)["header"].startswith(str(here / "relbk") + "/")
    chained = run_json(vault, "vault", "backup", "verify", "--path", json.loads(delta.stdout)["header"], "--deep")
    assert chained["deep"]["chain"] == [full["id"], json.loads(delta.stdout)["id"]]


def test_an_empty_out_is_refused(vault: Path, tmp_path: Path) -> None:
    # An unset variable in `--out "$DIR"`: no backup lands in whatever folder the shell is in.
    for empty in ("", " "):
        refused = hn_from(tmp_path, vault, "vault", "backup", "create", "--out", empty)
        assert refused.returncode == 2 and refused.stderr.startswith("error: --out is empty"), refused.stderr
        assert refused.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "vault"]
    assert run_json(vault, "vault", "backup", "list")["backups"] == []


def test_a_cache_that_cannot_be_written_is_a_warning_and_the_backup_is_recorded(vault: Path, tmp_path: Path) -> None:
    (vault / "sync").mkdir(exist_ok=True)
    (vault / "sync" / "backup-cache.json").mkdir()  # no file can take its place
    out = tmp_path / "bk"
    made = run_hn(vault, "vault", "backup", "create", "--out", str(out), "--json")
    full = json.loads(made.stdout)
    assert "backup-cache.json" in made.stderr and made.stderr.startswith("warning: "), made.stderr
    assert made.stderr.count("\n") == 1
    assert full["warnings"] == [made.stderr.removeprefix("warning: ").strip()]
    assert [b["id"] for b in run_json(vault, "vault", "backup", "list")["backups"]] == [full["id"]]
    # The next delta builds on it, reading every file (nothing vouches for any of them).
    delta = run_json(vault, "vault", "backup", "create", "--scope", "delta", "--out", str(out))
    assert delta["base_backup"] == full["id"] and delta["files_read"] == delta["entries"] == full["entries"]
    assert delta["stored"] == delta["entries"]  # each file is stored as it is read
    human = run_hn(vault, "vault", "backup", "create", "--out", str(out))
    # No progress bar where stderr is no terminal: the warning is all of it.
    assert human.stderr.startswith("warning: ") and human.stderr.count("\n") == 1, human.stderr
    assert "backup created" in human.stdout
    assert len(run_json(vault, "vault", "backup", "list")["backups"]) == 3
