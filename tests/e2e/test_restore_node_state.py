"""A restore over a vault does not roll its node state back: the high-water marks, seen
nonces and fork evidence the replaced vault had, newer than the backup's, still count."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hn.errors import RollbackError
from hn.node.state import NodeState
from hn.proto import timefmt
from hn.vault.home import Home
from tests.support import run_hn, run_json, vault_with_notes

FRIEND = "did:hn:" + "f" * 32


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backed_up_at_seq_5(tmp_path: Path) -> tuple[Path, dict]:
    """A vault whose node state has seen FRIEND's presence seq 5, and its backup."""
    vault = vault_with_notes(tmp_path, 2)
    state = NodeState(Home(vault))
    state.check_and_record_seq(FRIEND, "presence@2", 5, "a" * 64)
    state.close()
    return vault, run_json(vault, "vault", "backup", "create")


def test_a_restore_keeps_the_newer_marks_of_the_vault_it_replaces(tmp_path: Path) -> None:
    vault, backup = backed_up_at_seq_5(tmp_path)

    # After the backup, the node saw a newer presence, a signed request and a fork.
    state = NodeState(Home(vault))
    state.check_and_record_seq(FRIEND, "presence@2", 9, "b" * 64)
    assert state.remember_nonce(FRIEND, "nonce-1", timefmt.now() + 300)
    with pytest.raises(RollbackError):
        state.check_and_record_seq(FRIEND, "presence@2", 7, "c" * 64)
    other = "did:hn:" + "e" * 32
    state.check_and_record_seq(other, "presence@2", 3, "d" * 64)
    with pytest.raises(Exception, match="fork"):
        state.check_and_record_seq(other, "presence@2", 3, "0" * 64)
    state.close()

    restored = run_json(vault, "vault", "backup", "restore", "--path", backup["header"], "--into", str(vault))
    assert "sync/node.sqlite3" in restored["kept"]
    # The restored tree is the snapshot's, byte for byte; the replaced database waits beside it.
    db = vault / "sync" / "node.sqlite3"
    aside = vault / "sync" / "node.sqlite3.before-restore"
    assert aside.is_file()
    verified = run_json(vault, "vault", "backup", "verify", "--path", backup["header"], "--deep")
    assert verified["ok"]
    snapshot_db = _digest(db)

    state = NodeState(Home(vault))  # what a node, or any command using the state, opens first
    try:
        assert not aside.exists()
        assert state.high_water(FRIEND, "presence@2") == 9
        with pytest.raises(RollbackError):
            state.check_and_record_seq(FRIEND, "presence@2", 7, "c" * 64)
        assert not state.remember_nonce(FRIEND, "nonce-1", timefmt.now() + 300), "a seen request replays"
        assert {f["digest"] for f in state.forks() if f["did"] == other} == {"d" * 64, "0" * 64}
    finally:
        state.close()
    assert _digest(db) != snapshot_db
    run_hn(vault, "vault", "verify")


def test_a_lost_machine_restore_has_only_the_backup_s_state(tmp_path: Path) -> None:
    vault, backup = backed_up_at_seq_5(tmp_path)
    fresh = tmp_path / "new-machine"
    restored = run_json(vault, "vault", "backup", "restore", "--path", backup["header"], "--into", str(fresh))
    assert "sync/node.sqlite3" not in restored["kept"]
    assert not (fresh / "sync" / "node.sqlite3.before-restore").exists()
    state = NodeState(Home(fresh))
    try:
        assert state.high_water(FRIEND, "presence@2") == 5
    finally:
        state.close()


def test_an_unreadable_replaced_database_is_set_aside_once(tmp_path: Path) -> None:
    home = Home(tmp_path / "vault")
    home.ensure()
    aside = home.path("sync", "node.sqlite3.before-restore")
    aside.parent.mkdir(parents=True, exist_ok=True)
    aside.write_bytes(b"not a database at all" * 100)
    state = NodeState(home)
    state.check_and_record_seq(FRIEND, "presence@2", 1, "a" * 64)
    state.close()
    assert not aside.exists() and aside.with_name(aside.name + ".unreadable").exists()
    NodeState(home).close()  # not tried again
    assert aside.with_name(aside.name + ".unreadable").read_bytes().startswith(b"not a database")


def test_a_fork_between_the_restored_and_the_replaced_state_keeps_both_documents(tmp_path: Path) -> None:
    vault = vault_with_notes(tmp_path, 1)
    state = NodeState(Home(vault))
    state.check_and_record_seq(FRIEND, "presence@2", 5, "a" * 64, b'{"seq":5,"says":"a"}')
    state.close()
    backup = run_json(vault, "vault", "backup", "create")
    # This vault's node state is now another machine's: it saw FRIEND sign another seq 5.
    for name in ("node.sqlite3", "node.sqlite3-wal", "node.sqlite3-shm"):
        (vault / "sync" / name).unlink(missing_ok=True)
    state = NodeState(Home(vault))
    state.check_and_record_seq(FRIEND, "presence@2", 5, "b" * 64, b'{"seq":5,"says":"b"}')
    state.close()

    run_json(vault, "vault", "backup", "restore", "--path", backup["header"], "--into", str(vault))
    state = NodeState(Home(vault))
    try:
        assert {(f["seq"], f["digest"]) for f in state.forks()} == {(5, "a" * 64), (5, "b" * 64)}
        kept = {p.name: p.read_bytes() for p in state.fork_folder(FRIEND).glob("*.json")}
    finally:
        state.close()
    assert kept == {f"presence@2-5-{'a' * 64}.json": b'{"seq":5,"says":"a"}',
                    f"presence@2-5-{'b' * 64}.json": b'{"seq":5,"says":"b"}'}
