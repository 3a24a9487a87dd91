"""Node state in SQLite: seq high-water marks and fork evidence survive restarts and kill -9
(THREATS 2, 3, 13)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hn.errors import ForkError, RollbackError
from hn.node.state import NodeState
from hn.vault.home import Home

DID = "did:hn:" + "a" * 32


def test_rollback_and_fork_survive_restart(home: Home) -> None:
    state = NodeState(home)
    state.check_and_record_seq(DID, "presence@2", 5, "d5")
    state.check_and_record_seq(DID, "presence@2", 5, "d5")  # the same document again is fine
    state.close()
    state = NodeState(home)
    try:
        with pytest.raises(RollbackError):
            state.check_and_record_seq(DID, "presence@2", 4, "d4")
        with pytest.raises(ForkError):
            state.check_and_record_seq(DID, "presence@2", 5, "other")
        assert state.high_water(DID, "presence@2") == 5
        # types are separate: a hint's seq does not move the presence's mark
        state.check_and_record_seq(DID, "dht_hint@1", 1, "h1")
        assert state.high_water(DID, "presence@2") == 5
    finally:
        state.close()
    state = NodeState(home)
    try:
        evidence = {(f["seq"], f["digest"]) for f in state.forks()}
        assert evidence == {(5, "d5"), (5, "other")}, "both fork documents are kept as evidence"
        state.check_and_record_seq(DID, "presence@2", 6, "d6")
        assert state.high_water(DID, "presence@2") == 6
    finally:
        state.close()


def test_fork_in_either_order_same_outcome(tmp_path: Path) -> None:
    outcomes = []
    for first, second in (("x", "y"), ("y", "x")):
        home = Home(tmp_path / f"{first}{second}")
        home.ensure()
        state = NodeState(home)
        try:
            state.check_and_record_seq(DID, "presence@2", 3, first)
            with pytest.raises(ForkError):
                state.check_and_record_seq(DID, "presence@2", 3, second)
            outcomes.append((state.high_water(DID, "presence@2"), {f["digest"] for f in state.forks()}))
        finally:
            state.close()
    assert outcomes[0] == outcomes[1] == (3, {"x", "y"})


def test_nonces_persist_and_expire(home: Home) -> None:
    state = NodeState(home)
    assert state.remember_nonce(DID, "n1", expires=4_000_000_000)
    assert not state.remember_nonce(DID, "n1", expires=4_000_000_000)
    assert state.remember_nonce(DID, "old", expires=1)  # already expired: purged on the next insert
    state.close()
    state = NodeState(home)
    try:
        assert not state.remember_nonce(DID, "n1", expires=4_000_000_000)
        assert state.remember_nonce(DID, "old", expires=4_000_000_000)
    finally:
        state.close()


def test_kill_9_mid_writes_leaves_a_consistent_database(home: Home) -> None:
    """A writer killed while committing seqs in a loop: every committed seq is intact,
    the database passes its integrity check, and a restart continues from the mark."""
    script = textwrap.dedent(f"""
        import sys
        from hn.node.state import NodeState
        from hn.vault.home import Home
        state = NodeState(Home({str(home.root)!r}))
        for seq in range(1, 1_000_000):
            state.check_and_record_seq({DID!r}, "presence@2", seq, f"d{{seq}}")
            state.upsert_peer({DID!r}, f"http://127.0.0.1:{{seq % 60000 + 1}}")
            if seq == 50:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait(timeout=10)
    state = NodeState(home)
    try:
        assert state.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        mark = state.high_water(DID, "presence@2")
        assert mark >= 50
        row = state.db.execute("SELECT digest FROM seqs WHERE did=?", (DID,)).fetchone()
        assert row[0] == f"d{mark}"
        with pytest.raises(RollbackError):
            state.check_and_record_seq(DID, "presence@2", mark - 1, "older")
        state.check_and_record_seq(DID, "presence@2", mark + 1, "next")
    finally:
        state.close()
