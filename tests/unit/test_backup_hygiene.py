"""Backup creation against the sweep of interrupted creates' payload files, and with a
change-detection cache that cannot be written; which failed uploads can be resumed."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from hn.backup import client, create, hosted, restore, snapshot
from hn.errors import DiskError, NetworkError
from hn.vault.home import Home
from hn.vault.identities import Identity


def test_a_payload_temp_swept_before_its_lock_is_taken_is_made_again(
        alice: Identity, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another create's sweep can run between the temp file's creation and its lock: the
    sweep removes it (nobody holds it yet), and this create writes into a new one."""
    out = tmp_path / "out"
    real = create.atomic.atomic_writer
    sweeps: list[int] = []
    gone: list[str] = []

    @contextlib.contextmanager
    def swept_at_once(target: Path, mode: int = 0o644, durable: bool = True) -> Iterator[BinaryIO]:
        with real(target, mode, durable) as handle:
            if not sweeps:
                held = {n for n in os.listdir(target.parent) if "incoming-" in n}
                sweeps.append(create.sweep_incoming(target.parent))
                gone.extend(held - set(os.listdir(target.parent)))
            yield handle

    monkeypatch.setattr(create.atomic, "atomic_writer", swept_at_once)
    result = create.create(home, alice, out)
    assert sweeps == [0] and len(gone) == 1  # the first temp file, empty, was taken
    assert sorted(p.name for p in out.iterdir()) == sorted([result.header_path.name, result.payload_path.name])
    checked = restore.verify_quick(result.header, result.payload_path, home, None)
    assert checked["payload_digest"] == result.header["payload"]["digest"]


def test_the_backup_is_recorded_before_the_cache_and_a_cache_failure_is_only_a_warning(
        alice: Identity, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[create.Result] = []
    tried: list[int] = []

    def failing_save(home: Home, rows: list[str | int]) -> None:
        tried.append(len(written))
        raise DiskError("disk full while writing sync/backup-cache.json; nothing was written")

    monkeypatch.setattr(snapshot, "save_cache", failing_save)
    result = create.create(home, alice, tmp_path / "out", on_written=written.append)
    assert written == [result] and tried == [1]  # recorded first, then the cache tried
    assert result.header_path.exists() and result.payload_path.exists()
    [warning] = result.warnings
    assert result.header["id"] in warning and "disk full" in warning
    monkeypatch.undo()
    # Nothing was cached: a delta on it reads every file, and writes the cache this time.
    delta = create.create(home, alice, tmp_path / "out", base=result.header)
    assert delta.read_files == len(delta.header["entries"]) and delta.warnings == []
    assert create.create(home, alice, tmp_path / "out", base=delta.header).read_files == 0


@pytest.mark.parametrize(("status", "resumable"), [
    (500, True), (502, True), (503, True), (507, True), (408, True), (429, True), (409, True), (401, True),
    (403, False), (413, False), (400, False),
])
def test_which_answers_of_a_node_a_later_push_can_get_past(status: int, resumable: bool) -> None:
    body = json.dumps({"error": "e", "detail": "d"}).encode()
    answer = client._error("http://127.0.0.1:1/backup", status, body)
    assert f"HTTP {status} e: d" in answer.message
    assert client.can_resume(answer) is resumable
    # No answer at all (refused, reset, timed out): the node may be up later.
    assert client.can_resume(NetworkError("http://127.0.0.1:1/backup: timed out"))
    # Not found is no network failure: the push says what was missing, not how to resume.
    assert not client.can_resume(client._error("http://127.0.0.1:1/backup", 404, body))


def test_a_sweep_takes_only_the_names_a_create_gives(tmp_path: Path) -> None:
    """--out may be any folder the user chose: files that merely look alike stay."""
    mine = [".incoming-0123456789abcdef.backup.payload", "..incoming-0123456789abcdef.backup.payload.k2_x9a.tmp"]
    theirs = [".incoming-notes.txt", ".incoming-0123456789abcdef.backup.payload.bak", "..incoming-x"]
    for name in mine + theirs:
        (tmp_path / name).write_bytes(b"12345")
    assert create.sweep_incoming(tmp_path) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)


@pytest.mark.parametrize("edited", ["\u00b2", "\u0663", "9" * 5000, "-5", "1e9", ""])
def test_a_hosting_quota_or_retention_edited_by_hand_falls_back_to_the_node_s_own(home: Home, edited: str) -> None:
    """What `hn policy set` refuses, written into config/policy.toml by hand, is no crash
    (a 500 to the friend uploading): the node's configured limit applies."""
    owner = "did:hn:" + "b" * 32
    home.write_toml("policy.toml", {name: {"default": edited, "targets": {owner: edited}}
                                    for name in ("backup.quota_bytes", "backup.retention")})
    store = hosted.HostedStore(home, hosted.Limits(quota=123, keep_last=4))
    assert store.quota(owner) == 123 and store.keep_last(owner) == 4
