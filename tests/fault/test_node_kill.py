"""kill -9 during a sync (THREATS 13): the consumer's state is the old or the new one, never
mixed, and the next refresh completes from where it stands."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from hn.vault import identities, store
from hn.vault.home import Home
from tests.support import ServedNode, free_port, hn_env, run_json

DOCS = 1500


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, str, str]]:
    root = tmp_path_factory.mktemp("pub")
    home = Home(root / "bob")
    home.ensure()
    me = identities.create(home, "bob")
    files = root / "files"
    files.mkdir()
    for i in range(DOCS):
        (files / f"n{i:05d}.txt").write_text(f"note {i}\n" * (1 + i % 7))
    store.add_files(home, me.keys, [files], True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = ServedNode(home.root, ["--listen", f"127.0.0.1:{port}", "--public-url", url, "--no-dht"])
    try:
        yield home, me.did, url
    finally:
        node.stop()


def check_consistent(home: Path, did: str) -> set[str]:
    """SQLite intact, and every entry marked mirrored has its exact bytes in the cache."""
    db = sqlite3.connect(home / "sync" / "node.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT id, path, digest, mirrored FROM peer_entries WHERE did=?", (did,)).fetchall()
        peer = db.execute("SELECT cursor, size FROM peers WHERE did=?", (did,)).fetchone()
    finally:
        db.close()
    folder = home / "cache" / "federation" / did[len("did:hn:"):]
    if peer is not None and peer[0] != "0":
        # a committed cursor always comes with the whole index it names
        assert len(rows) == peer[1]
    for _id, path, digest, mirrored in rows:
        if mirrored:
            assert blake3.blake3((folder / "artifacts" / path).read_bytes()).hexdigest() == digest
    for stray in (folder / "artifacts").rglob("*") if (folder / "artifacts").exists() else []:
        if stray.is_file() and not stray.name.startswith(".mirror."):
            assert blake3.blake3(stray.read_bytes()).hexdigest() == stray.name
    return {r[0] for r in rows}


@pytest.mark.parametrize("delay", [0.4, 0.7, 1.0, 1.4, 2.0])
def test_kill_during_mirror_refresh(publisher: tuple[Home, str, str], tmp_path: Path, delay: float) -> None:
    bob_home, bob_did, url = publisher
    alice = tmp_path / "alice"
    run_json(alice, "id", "create", "alice")
    run_json(alice, "mcp", "federate", "add", bob_did, url)
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "hn", "mcp", "federate", "refresh", "--mirror", "--json"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=hn_env(alice))
        time.sleep(delay * (round_ + 1) / 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        check_consistent(alice, bob_did)
    done = run_json(alice, "mcp", "federate", "refresh", "--mirror")
    assert done["ok"] is True
    held = check_consistent(alice, bob_did)
    assert held == {e["id"] for e in store.load_catalog(bob_home).index_entries()}
    row = run_json(alice, "mcp", "federate", "list")["peers"][0]
    assert row["health"] == "ok" and row["size"] == DOCS
    folder = alice / "cache" / "federation" / bob_did[len("did:hn:"):] / "artifacts" / "doc"
    assert len([p for p in folder.iterdir() if not p.name.startswith(".")]) == DOCS
    assert not list(folder.glob(".mirror.*")), "interrupted downloads are cleaned up"
