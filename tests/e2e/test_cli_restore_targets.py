"""What a restore may replace, and what it keeps: through the real `hn` entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hn.backup import swap
from tests.support import run_hn, run_json, tree_digest


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    note = tmp_path / "note.md"
    note.write_text("# a note\n")
    run_json(home, "doc", "add", str(note))
    return home


def refused(home: Path, *args: str) -> str:
    proc = run_hn(home, *args, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return lines[0]


def test_a_folder_that_is_neither_empty_nor_a_vault_is_never_replaced(vault: Path, tmp_path: Path) -> None:
    full = run_json(vault, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    photos = tmp_path / "photos"
    (photos / "2026").mkdir(parents=True)
    (photos / "2026" / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    before = tree_digest(photos)
    for extra in ([], ["--force"]):
        line = refused(vault, "vault", "backup", "restore", "--path", full["header"], "--into", str(photos), *extra)
        assert line == (f"error: {photos} is not empty and holds no vault; a restore replaces the whole folder, "
                        "so give an empty or new folder, or an existing vault")
        assert tree_digest(photos) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "note.md", "photos", "vault"]
    # An empty folder is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_json(vault, "vault", "backup", "restore", "--path", full["header"], "--into", str(empty))
    assert done["ok"] and done["kept"] == []
    assert run_json(empty, "vault", "verify")["ok"]


def test_restoring_a_vault_in_place_keeps_its_backups_and_the_ones_it_holds_for_friends(vault: Path) -> None:
    full = run_json(vault, "vault", "backup", "create")  # into the vault's own backups/
    assert Path(full["header"]).parent == vault / "backups"
    held = vault / "hosted" / "backups" / "did-hn-friend" / "x.backup.payload"
    held.parent.mkdir(parents=True)
    held.write_bytes(b"a friend's sealed backup")
    (vault / "cache" / "peers").mkdir(parents=True, exist_ok=True)
    (vault / "cache" / "peers" / "mirror.bin").write_bytes(b"a mirrored artefact")
    registry = (vault / "sync" / "backups.json").read_bytes()
    (vault / "personal" / "scratch.txt").write_text("written after the backup")

    done = run_json(vault, "vault", "backup", "restore", "--path", full["header"], "--into", str(vault))
    assert done["kept"] == ["backups", "hosted", "sync/backups.json", "cache"]
    assert not (vault / "personal" / "scratch.txt").exists()  # the vault is the backup's again
    assert Path(full["header"]).exists() and Path(full["payload"]).exists()
    assert held.read_bytes() == b"a friend's sealed backup"
    assert (vault / "cache" / "peers" / "mirror.bin").read_bytes() == b"a mirrored artefact"
    assert (vault / "sync" / "backups.json").read_bytes() == registry
    listed = run_json(vault, "vault", "backup", "list")["backups"]
    assert [(b["id"], b["local"]) for b in listed] == [(full["id"], True)]
    assert run_json(vault, "vault", "verify")["ok"]
    assert sorted(p.name for p in vault.parent.iterdir() if p.name.startswith(".")) == []


def test_a_file_that_is_not_a_backup_header_is_one_clear_error(vault: Path, tmp_path: Path) -> None:
    identity = tmp_path / "alice.identity.json"
    run_hn(vault, "id", "export", "--out", str(identity))
    expected = f"error: {identity} is not a backup header: expected a backup@1 document, got 'identity@1'"
    assert refused(vault, "vault", "backup", "verify", "--path", str(identity)) == expected
    assert refused(vault, "vault", "backup", "restore", "--path", str(identity),
                   "--into", str(tmp_path / "r")) == expected
    odd = tmp_path / "odd.backup.json"
    odd.write_text(json.dumps({"id": "../../x", "type": "backup@1"}, separators=(",", ":")))
    assert refused(vault, "vault", "backup", "verify", "--path", str(odd)) == \
        f"error: {odd} is not a backup header: backup@1: the id is not 32 lowercase hex characters"
    assert not (tmp_path / "r").exists()


def test_a_delta_whose_base_is_missing_names_the_base(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    full = run_json(vault, "vault", "backup", "create", "--out", str(out))
    (vault / "personal" / "new.txt").write_text("changed")
    delta = run_json(vault, "vault", "backup", "create", "--scope", "delta", "--base", full["id"], "--out", str(out))
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in (delta["header"], delta["payload"]):
        shutil.copy(name, alone)
    header = alone / Path(delta["header"]).name
    line = refused(vault, "vault", "backup", "verify", "--path", str(header), "--deep")
    assert line.startswith(f"error: backup {delta['id']} is a delta on {full['id']}, which is needed to restore "
                           f"it and cannot be read: cannot read backup header {alone / full['id']}.backup.json")


def test_a_download_left_by_an_interrupted_restore_is_cleared(tmp_path: Path) -> None:
    target = tmp_path / "vault"
    leftover = tmp_path / ".vault.restore-download"
    leftover.mkdir()
    (leftover / "big.backup.payload").write_bytes(b"\0" * 4096)
    assert swap.download_folder(target) == leftover
    assert list(leftover.iterdir()) == []
    assert oct(leftover.stat().st_mode & 0o777) == "0o700"
