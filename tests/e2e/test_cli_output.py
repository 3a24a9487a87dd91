"""What the real `hn` prints: lines a reader copies are whole, into a pipe and on a
narrow terminal."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.support import hn_env, run_hn, run_json

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
