"""What the real `hn` prints and writes: lines a reader copies are whole (into a pipe and on a
narrow terminal), --out never replaces a file unless told to, odd --out paths and the
import of one's own identity are plain errors, Ctrl-C says so, and a failed
`backup verify --json` is a report."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.support import hn_env, run_hn, run_json, tree_digest

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def narrow(home: Path) -> dict[str, str]:
    """The environment of a run whose Rich would fold lines at 80 columns."""
    return hn_env(home, COLUMNS="80")


def in_terminal(home: Path, *args: str, columns: int = 40) -> str:
    """Run `hn ARGS` with stdout on a pseudo-terminal ``columns`` wide; its output, colours removed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = hn_env(home, COLUMNS=str(columns))
    proc = subprocess.Popen([sys.executable, "-m", "hn", *args], stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=subprocess.PIPE, env=env)
    os.close(follower)
    out = bytearray()
    while True:
        try:
            block = os.read(leader, 65536)
        except OSError as exc:  # EIO: the child closed its side
            if exc.errno != errno.EIO:
                raise
            break
        if not block:
            break
        out += block
    os.close(leader)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return ANSI.sub("", out.decode()).replace("\r\n", "\n")


def share_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("share ")]


def test_recovery_shares_split_into_a_pipe_restore_line_by_line(tmp_path: Path) -> None:
    home = tmp_path / "v"
    did = run_json(home, "id", "create", "alice")["did"]
    split = run_hn(home, "id", "recovery", "split", "-k", "2", "-n", "3", env=narrow(home))
    lines = split.stdout.splitlines()
    # Only the shares on stdout, one whole 33-word mnemonic a line; the advice is on stderr.
    assert len(lines) == 3 and all(re.fullmatch(r"share \d of 3: (\w+ ){32}\w+", line) for line in lines), lines
    assert "Any 2 of these" in split.stderr
    # Two of those exact lines, as a user would keep them, rebuild the identity.
    restored = run_json(tmp_path / "new", "id", "recovery", "restore", input="\n".join(lines[1:]) + "\n")
    assert restored["did"] == did
    # And the bare mnemonics (the label taken off) do too.
    bare = "\n".join(line.split(": ", 1)[1] for line in lines[:2])
    assert run_json(tmp_path / "new2", "id", "recovery", "restore", input=bare)["did"] == did


def test_digests_and_commands_are_whole_in_a_pipe(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    digest = run_json(home, "id", "show")["identity_digest"]
    shown = run_hn(home, "id", "show", env=narrow(home)).stdout
    assert any(line.split() == ["identity_digest", digest] for line in shown.splitlines()), shown
    note = tmp_path / "n.txt"
    note.write_text("x")
    run_json(home, "doc", "add", str(note))
    full = run_json(home, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    out = tmp_path / ("a folder with a long name " * 3).strip() / "payload.tar.zst"
    written = run_hn(home, "vault", "backup", "decrypt", "--path", full["header"], "--out", str(out),
                     env=narrow(home)).stdout
    assert len(written.splitlines()) == 1, written
    assert written.rstrip("\n").endswith(f"extract with: zstd -d < {shlex.quote(str(out))} | tar -x"), written
    listed = run_hn(home, "vault", "backup", "list", env=narrow(home)).stdout
    assert any(full["id"] in line and full["created_at"] in line for line in listed.splitlines()), listed


def test_shares_and_digests_are_whole_on_a_narrow_terminal(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    digest = run_json(home, "id", "show")["identity_digest"]
    shown = in_terminal(home, "id", "show")
    assert any(line.split() == ["identity_digest", digest] for line in shown.splitlines()), shown
    split = share_lines(in_terminal(home, "id", "recovery", "split", "-k", "2", "-n", "3"))
    assert len(split) == 3 and all(len(line.split(": ", 1)[1].split()) == 33 for line in split), split
    restored = run_json(tmp_path / "new", "id", "recovery", "restore", input="\n".join(split[:2]))
    assert restored["did"] == run_json(home, "id", "show")["did"]


def test_out_never_replaces_a_file_without_force(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    alice = run_json(a, "id", "create", "alice")["did"]
    bob = run_json(b, "id", "create", "bob")["did"]
    run_hn(b, "id", "export", "--out", str(tmp_path / "bob.json"))
    run_hn(a, "id", "import", str(tmp_path / "bob.json"))
    run_hn(a, "id", "export", "--out", str(tmp_path / "alice.json"))
    run_hn(b, "id", "import", str(tmp_path / "alice.json"))
    note = tmp_path / "note.md"
    note.write_text("# for bob\n")
    added = run_json(a, "doc", "add", str(note))["added"][0]
    shard = run_json(a, "doc", "share", added["id"], "--to", bob)
    shard_file = a / "shards" / shard["id"][:2] / f"{shard['id']}.shard"

    kept = tmp_path / "kept.md"
    kept.write_text("mine, not to be lost\n")
    refused = run_hn(b, "doc", "open", str(shard_file), "--out", str(kept), check=False)
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr == f"error: {kept} already exists: pass --force to replace it, or choose another --out\n"
    assert kept.read_text() == "mine, not to be lost\n"
    opened = run_json(b, "doc", "open", str(shard_file), "--out", str(kept), "--force")
    assert opened["sender"] == alice and kept.read_text() == "# for bob\n"

    full = run_json(a, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    plain = tmp_path / "payload.tar.zst"
    plain.write_bytes(b"an older archive")
    refused = run_hn(a, "vault", "backup", "decrypt", "--path", full["header"], "--out", str(plain), check=False)
    assert refused.returncode != 0 and "already exists: pass --force" in refused.stderr, refused.stderr
    assert plain.read_bytes() == b"an older archive"
    run_json(a, "vault", "backup", "decrypt", "--path", full["header"], "--out", str(plain), "--force")
    assert plain.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame


def test_odd_out_paths_are_plain_errors(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    folder = tmp_path / "files"
    folder.mkdir()
    for value, expected in (("", "error: --out is empty: give the path of a file to write\n"),
                            (str(folder), f"error: --out {folder} is a folder: give a file path, such as "
                                          f"{folder / 'NAME'}\n")):
        proc = run_hn(home, "id", "export", "--out", value, check=False)
        assert proc.returncode == 2 and proc.stderr == expected, proc.stderr
        assert "previous version" not in proc.stderr
    assert list(folder.iterdir()) == []


def test_importing_your_own_identity_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "v"
    did = run_json(home, "id", "create", "alice")["did"]
    me = tmp_path / "me.json"
    run_hn(home, "id", "export", "--out", str(me))
    before = tree_digest(home)
    same = run_hn(home, "id", "import", str(me), check=False)
    assert same.returncode == 1 and same.stdout == ""
    assert same.stderr == (f"error: {did} is your own identity 'alice' in this vault: there is nothing to import "
                           "(`hn id import` pins the identities of other people)\n")
    assert tree_digest(home) == before
    # Rotated in another vault (restored from a share): explained, and this vault left as it was.
    other = tmp_path / "other"
    share = share_lines(run_hn(home, "id", "recovery", "split", "-k", "1", "-n", "1").stdout)
    run_json(other, "id", "recovery", "restore", "--identity", str(me), input="\n".join(share))
    before = tree_digest(home)
    run_json(other, "id", "rotate")
    newer = tmp_path / "newer.json"
    run_hn(other, "id", "export", "--out", str(newer))
    rotated = run_hn(home, "id", "import", str(newer), check=False)
    assert rotated.returncode == 1 and "rotated in another vault to key 1 (this vault holds key 0)" in rotated.stderr
    assert "does not change your own keys" in rotated.stderr
    assert tree_digest(home) == before
    assert not (home / "identities" / "contacts").exists() or not any((home / "identities" / "contacts").iterdir())
    # The other way round: an older export of one's own identity.
    older = run_hn(other, "id", "import", str(me), check=False)
    assert older.returncode == 1 and "this export of it is older" in older.stderr, older.stderr


def test_ctrl_c_says_interrupted(tmp_path: Path) -> None:
    """`hn id import FIFO` blocks reading a named pipe nobody writes: the command is running
    when it gets SIGINT (a child of a non-interactive shell would ignore SIGINT, so the child
    is given the default disposition)."""
    fifo = tmp_path / "identity.json"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "hn", "id", "import", str(fifo)], env=hn_env(tmp_path / "v"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    writer = None
    try:
        while writer is None:  # opening the writing end succeeds once hn has opened the pipe to read
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        os.close(writer)  # whatever happens, hn's read ends (a missed signal fails, not hangs)
        writer = None
        out, err = proc.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 130, err
    assert err == b"interrupted\n" and out == b""


@pytest.mark.parametrize("deep", [False, True])
def test_a_failed_backup_verify_with_json_is_a_report(tmp_path: Path, deep: bool) -> None:
    home = tmp_path / "v"
    run_json(home, "id", "create", "alice")
    note = tmp_path / "n.txt"
    note.write_text("x" * 5000)
    run_json(home, "doc", "add", str(note))
    full = run_json(home, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    payload = Path(full["payload"])
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    proc = run_hn(home, "vault", "backup", "verify", "--path", full["header"], *(["--deep"] if deep else []),
                  "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["id"] == full["id"] and report["scope"] == "full"
    [failed] = report["failed"]
    assert failed["check"] == ("deep" if deep else "quick") and failed["ok"] is False
    assert proc.stderr == f"error: {failed['detail']}\n"
    assert ("failed authentication" if deep else "payload digest does not match") in failed["detail"]


def test_adding_many_files_into_a_pipe_prints_only_the_summary(tmp_path: Path) -> None:
    """The progress bar of a long `doc add` belongs to the terminal (stderr), never to the
    output a script reads."""
    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(25):
        (notes / f"n{i:02d}.md").write_text(f"note {i}\n")
    out = run_hn(home, "doc", "add", str(notes)).stdout
    lines = out.splitlines()
    assert lines and all(line.strip() for line in lines), out
    assert lines[0].startswith("added 25 document(s)"), out


def test_a_peer_s_words_in_a_table_are_text_not_markup(tmp_path: Path) -> None:
    """A peer's error (kept as its last_error) reaches `hn status` and `federate list`:
    shown as it is, never read as Rich markup."""
    import sqlite3

    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    peer = run_json(tmp_path / "bob", "id", "create", "bob")["did"]
    run_hn(tmp_path / "bob", "id", "export", "--out", str(tmp_path / "bob.json"))
    run_hn(home, "id", "import", str(tmp_path / "bob.json"))
    from hn.federation import roster
    from hn.vault.home import Home

    roster.add(Home(home), peer, "http://127.0.0.1:9")  # as `federate add` leaves it
    run_json(home, "mcp", "federate", "list")  # makes the node state database
    db = sqlite3.connect(home / "sync" / "node.sqlite3")
    try:
        db.execute("INSERT OR REPLACE INTO peers (did, url, health, last_error) VALUES (?, ?, 'failing', ?)",
                   (peer, "http://127.0.0.1:9", "node: forbidden: [/oops] [link=http://evil]x[/link]"))
        db.commit()
    finally:
        db.close()
    for args in (("status",), ("mcp", "federate", "list")):
        out = run_hn(home, *args).stdout
        assert "[/oops] [link=http://evil]x[/link]" in out.replace("\n", ""), out


def test_what_a_user_or_a_peer_typed_is_printed_as_text(tmp_path: Path) -> None:
    home = tmp_path / "v"
    run_hn(home, "id", "create", "alice")
    selector = "trust_link.confidence>=0.5"
    assert run_hn(home, "policy", "set", "relay.accept", selector).stdout == f"relay.accept = {selector}\n"
    # Control characters in an error (here a folder name) are shown as escapes, in one line.
    odd = tmp_path / "no\x1b[2Jvault"
    proc = run_hn(odd, "vault", "status", check=False)
    assert proc.returncode == 1 and "\x1b" not in proc.stderr and "no\\x1b[2Jvault" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_policy_value_it_cannot_take_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "v"
    for args in (("federation.mode", "open"), ("trust.max_age", "soon"), ("nonsense", "1"),
                 ("relay.accept", "friends", "--target", "bob")):
        proc = run_hn(home, "policy", "set", *args, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and not proc.stdout, (args, proc.stderr)
    assert not home.exists()
