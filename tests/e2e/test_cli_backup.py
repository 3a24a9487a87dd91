"""Local backups through the real `hn` entry point: create, list, verify (quick and deep),
a delta, restore (verify-only and into a folder), decrypt for GNU tar, and damage refused."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hn.proto import backup as proto
from tests.support import run_hn, run_json, vault_with_notes


def files_of(root: Path, under: str = "personal") -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root/under``."""
    base = root / under
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    home = vault_with_notes(tmp_path, 12)
    (home / "personal" / "diary").mkdir(parents=True)
    for i in range(5):
        (home / "personal" / "diary" / f"day-{i}.txt").write_bytes(bytes([i]) * (3000 + i))
    return home


def test_create_list_verify_delta_restore_decrypt(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    full = run_json(vault, "vault", "backup", "create", "--out", str(out))
    assert full["scope"] == "full" and full["files_read"] == full["entries"] == full["stored"]
    header = Path(full["header"])
    assert header.parent == out and Path(full["payload"]).exists()

    quick = run_json(vault, "vault", "backup", "verify", "--path", str(header))
    assert quick["ok"] and quick["signature"] == "ok" and quick["manifest"] == "ok"
    assert quick["merkle_root"] == full["merkle_root"] and quick["payload_digest"] == full["payload_digest"]
    assert "deep" not in quick
    deep = run_json(vault, "vault", "backup", "verify", "--path", str(header), "--deep")
    assert deep["ok"] and deep["deep"]["files"] == full["entries"] and deep["deep"]["chain"] == [full["id"]]

    # One change, one deletion, one new file: the delta reads only the two it must.
    before_delta = files_of(vault)
    (vault / "personal" / "diary" / "day-0.txt").write_bytes(b"rewritten")
    (vault / "personal" / "diary" / "day-1.txt").unlink()
    (vault / "personal" / "diary" / "day-9.txt").write_bytes(b"new day")
    delta = run_json(vault, "vault", "backup", "create", "--scope", "delta", "--base", full["id"][:8],
                     "--out", str(out))
    assert delta["scope"] == "delta" and delta["base_backup"] == full["id"]
    assert delta["files_read"] == 2 and delta["stored"] == 2
    listed = {b["id"]: b for b in run_json(vault, "vault", "backup", "list")["backups"]}
    # A listed chain runs from the backup itself down to its full backup.
    assert listed[delta["id"]]["chain"] == [delta["id"], full["id"]] and listed[delta["id"]]["local"]
    assert listed[full["id"]]["chain"] == [full["id"]]
    chained = run_json(vault, "vault", "backup", "verify", "--path", delta["header"], "--deep")
    assert chained["ok"] and chained["deep"]["chain"] == [full["id"], delta["id"]]

    # --verify-only decrypts the whole chain and writes nothing.
    target = tmp_path / "restored"
    checked = run_json(vault, "vault", "backup", "restore", "--path", delta["header"], "--into", str(target),
                       "--verify-only")
    assert checked["ok"] and checked["verify_only"] and not target.exists()
    restored = run_json(vault, "vault", "backup", "restore", "--path", delta["header"], "--into", str(target))
    assert restored["chain"] == [full["id"], delta["id"]] and restored["merkle_root"] == delta["merkle_root"]
    now = files_of(vault)
    assert files_of(target) == now and now != before_delta
    assert not (target / "personal" / "diary" / "day-1.txt").exists()
    run_hn(target, "vault", "verify")
    # Restoring the full backup alone gives the state before the delta.
    earlier = tmp_path / "earlier"
    run_json(vault, "vault", "backup", "restore", "--path", str(header), "--into", str(earlier))
    assert files_of(earlier) == before_delta

    plain = tmp_path / "payload.tar.zst"
    written = run_json(vault, "vault", "backup", "decrypt", "--path", str(header), "--out", str(plain))
    assert written["id"] == full["id"] and plain.exists()
    if shutil.which("zstd") and shutil.which("tar"):
        extracted = tmp_path / "by-tar"
        extracted.mkdir()
        subprocess.run(f"zstd -d -q < {shlex.quote(str(plain))} | tar -x -C {shlex.quote(str(extracted))}",
                       shell=True, check=True)
        assert files_of(extracted) == before_delta


def test_a_damaged_payload_is_refused_by_verify_and_restore(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    full = run_json(vault, "vault", "backup", "create", "--out", str(out))
    payload = Path(full["payload"])
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    target = tmp_path / "restored"
    # The quick check finds it by digest; decrypting finds it as a chunk that fails its tag.
    for args, reason in ((["verify", "--path", full["header"]], "payload digest does not match"),
                         (["verify", "--path", full["header"], "--deep"], "failed authentication"),
                         (["restore", "--path", full["header"], "--into", str(target)], "failed authentication")):
        proc = run_hn(vault, "vault", "backup", *args, check=False)
        assert proc.returncode != 0, args
        assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
        assert reason in proc.stderr, proc.stderr
    assert not target.exists()
    # A payload cut short, and one with bytes added, are refused before any decryption.
    for body in (bytes(data[:-10]), bytes(data) + b"extra"):
        payload.write_bytes(body)
        proc = run_hn(vault, "vault", "backup", "verify", "--path", full["header"], "--deep", check=False)
        assert proc.returncode != 0 and "the signed header says" in proc.stderr, proc.stderr


def test_a_header_under_another_name_is_checked_and_restored_with_the_payload_named_after_it(
        vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    full = run_json(vault, "vault", "backup", "create", "--out", str(out))
    copy = tmp_path / "copy"
    copy.mkdir()
    renamed = copy / "mine.backup.json"
    shutil.copy(full["header"], renamed)
    shutil.copy(full["payload"], copy / f"{full['id']}.backup.payload")  # intact, under the id's name
    damaged = bytearray(Path(full["payload"]).read_bytes())
    damaged[-5] ^= 0x01
    (copy / "mine.backup.payload").write_bytes(bytes(damaged))  # the payload named after the header file
    target = tmp_path / "restored"
    # Quick check, deep check and restore all read mine.backup.payload, never the intact copy.
    for args, reason in ((["verify", "--path", str(renamed)], "payload digest does not match"),
                         (["verify", "--path", str(renamed), "--deep"], "failed authentication"),
                         (["restore", "--path", str(renamed), "--into", str(target)], "failed authentication")):
        proc = run_hn(vault, "vault", "backup", *args, check=False)
        assert proc.returncode != 0 and reason in proc.stderr, (args, proc.stderr)
    assert not target.exists()
    (copy / "mine.backup.payload").write_bytes(Path(full["payload"]).read_bytes())
    (copy / f"{full['id']}.backup.payload").write_bytes(bytes(damaged))
    deep = run_json(vault, "vault", "backup", "verify", "--path", str(renamed), "--deep")
    assert deep["ok"] and deep["deep"]["files"] == full["entries"]
    restored = run_json(vault, "vault", "backup", "restore", "--path", str(renamed), "--into", str(target))
    assert restored["merkle_root"] == full["merkle_root"]


def test_a_place_that_cannot_take_the_backup_or_the_restore_is_one_clear_error(vault: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    full = run_json(vault, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    cases = [
        (["create", "--out", str(a_file)], f"{a_file} exists and is not a folder"),
        (["create", "--out", str(a_file / "sub")], f"cannot write the backup into {a_file / 'sub'}: Not a directory"),
        (["restore", "--path", full["header"], "--into", str(a_file)], f"{a_file} exists and is not a folder"),
        (["restore", "--path", full["header"], "--into", str(a_file / "sub" / "vault")],
         f"cannot restore into {a_file / 'sub' / 'vault'}: cannot make {a_file / 'sub'}: Not a directory"),
    ]
    if Path("/proc/self").is_dir():  # a file system where no folder can be made, even by root
        cases.append((["create", "--out", "/proc/hn-backups"],
                      "cannot write the backup into /proc/hn-backups: No such file or directory"))
        cases.append((["restore", "--path", full["header"], "--into", "/proc/hn-vault"],
                      "cannot restore into /proc/hn-vault: cannot make the staging folder /proc/.hn-vault.restore-staging"))
    for args, message in cases:
        proc = run_hn(vault, "vault", "backup", *args, check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), \
            (args, proc.stderr)
    assert a_file.read_text() == "not a folder\n"


def test_a_header_path_that_is_no_file_or_too_big_is_refused_without_waiting(vault: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opened for reading, it would wait for a writer that never comes
    huge = tmp_path / "huge.backup.json"
    with open(huge, "wb") as sparse:  # a sparse file: no disk is used
        sparse.truncate(proto.MAX_HEADER + 1)
    cases = [("/dev/zero", "is not a backup header: it is a character device"),
             (str(tmp_path), "is not a backup header: it is a folder"),
             (str(fifo), "is not a backup header: it is a FIFO"),
             (str(huge), f"is larger than {proto.MAX_HEADER} bytes, the most a backup header may hold")]
    for path, message in cases:
        for args in (["verify", "--path", path], ["restore", "--path", path, "--into", str(tmp_path / "r")],
                     ["decrypt", "--path", path, "--out", str(tmp_path / "x.tar.zst")]):
            proc = run_hn(vault, "vault", "backup", *args, check=False, timeout=60)
            assert proc.returncode == 1 and proc.stderr == f"error: {path} {message}\n", (args, proc.stderr)
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.tar.zst").exists()
