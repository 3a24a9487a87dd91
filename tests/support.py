"""Helpers shared by the test suites: run the real `hn` entry point and `hn mcp serve`
nodes, make vaults and in-process nodes, pick free ports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hn.smoke.harness import free_port, terminate, wait_ready

if TYPE_CHECKING:
    from hn.node.app import Node
    from hn.smoke.harness import Harness, Peer
    from hn.vault.home import Home
    from hn.vault.identities import Identity

__all__ = ["ROOT", "ServedNode", "free_port", "hn_env", "hn_in_process", "logged", "make_person", "run_hn", "run_json", "start_node"]

ROOT = Path(__file__).resolve().parent.parent


def hn_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    if home is not None:
        env["HN_HOME"] = str(home)
    env.update(extra)
    return env


def run_hn(home: Path | None, *args: str, input: str | None = None, check: bool = True,
           timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m hn ARGS` (the same entry point as the `hn` console script)."""
    proc = subprocess.run(
        [sys.executable, "-m", "hn", *args], input=input, capture_output=True, text=True,
        timeout=timeout, env=env or hn_env(home), cwd=str(home.parent) if home else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"hn {' '.join(args)} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def run_json(home: Path | None, *args: str, input: str | None = None) -> Any:
    proc = run_hn(home, *args, "--json", input=input)
    return json.loads(proc.stdout)


class ServedNode:
    """`hn mcp serve ARGS` as a child process, ready (its MCP_READY line read) when made."""

    def __init__(self, home: Path, args: list[str]) -> None:
        self.home = home
        self.proc = subprocess.Popen([sys.executable, "-m", "hn", "mcp", "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=hn_env(home))
        self.ready = wait_ready(self.proc, "node")

    def stop(self) -> None:
        terminate(self.proc)


def vault_with_notes(root: Path, count: int, lines: int = 50) -> Path:
    """A vault made through the CLI, ``root/vault``, of alice with ``count`` notes added
    (note ``i`` has ``i * lines`` lines)."""
    home = root / "vault"
    run_json(home, "id", "create", "alice")
    docs = root / "docs"
    docs.mkdir()
    for i in range(count):
        (docs / f"note-{i:02d}.md").write_text(f"# note {i}\n" + "line\n" * (i * lines))
    run_json(home, "doc", "add", str(docs))
    return home


def introduced(root: Path) -> tuple[Path, Path, str]:
    """Two vaults made through the CLI, ``root/alice`` and ``root/bob``, alice holding bob's
    identity as a contact: (alice's folder, bob's folder, bob's DID)."""
    alice, bob = root / "alice", root / "bob"
    bob_did = str(run_json(bob, "id", "create", "bob")["did"])
    run_json(alice, "id", "create", "alice")
    run_hn(bob, "id", "export", "--out", str(root / "bob.json"))
    run_hn(alice, "id", "import", str(root / "bob.json"))
    return alice, bob, bob_did


def share_a_note(home: Path, to_did: str, root: Path) -> tuple[str, str]:
    """A note added to ``home`` and shared with ``to_did``: (document id, shard id)."""
    note = root / "note.txt"
    note.write_text("for bob")
    doc = str(run_json(home, "doc", "add", str(note))["added"][0]["id"])
    return doc, str(run_json(home, "doc", "share", doc, "--to", to_did)["id"])


def tree_digest(root: Path) -> str:
    """One digest over every file's relative path and bytes (the vault lock aside): equal
    digests mean nothing in the tree changed."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".lock":
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def make_person(root: Path, name: str) -> tuple[Home, Identity]:
    """A new vault ``root/name`` holding one identity called ``name``."""
    from hn.vault import identities
    from hn.vault.home import Home

    home = Home(root / name)
    home.ensure()
    return home, identities.create(home, name)


async def start_node(home: Home, **settings: object) -> tuple[Node, str]:
    """An in-process node of ``home`` on a free loopback port, with no DHT and no background
    sync (``settings`` add to that or override it); returns it started, with its URL."""
    from hn.node.app import Node

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = Node(home, {"listen": f"127.0.0.1:{port}", "public_url": url, "no_dht": True, "sync_interval": 3600,
                       **settings})
    await node.start()
    return node, url


def sqlite_full() -> Exception:
    """A real SQLITE_FULL, from a database capped at the pages it already has."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE t (x)")
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        db.close()
    raise AssertionError("the capped database took every row")


@contextlib.contextmanager
def logged(caplog: pytest.LogCaptureFixture, logger: str) -> Iterator[Callable[[str], list[logging.LogRecord]]]:
    """Capture ``logger``'s records even where the node's own log set-up stopped them from
    reaching the root logger. Yields ``events(message)``: the records of that event, each
    once (a record may reach the capture directly and through the root)."""
    target = logging.getLogger(logger)
    target.addHandler(caplog.handler)
    try:
        yield lambda event: list({id(r): r for r in caplog.records if r.getMessage() == event}.values())
    finally:
        target.removeHandler(caplog.handler)


def hn_in_process(home: Home, *args: str) -> None:
    """Run one `hn ... --json` command in this process (so faults can be injected into it);
    a failure raises HnError with its one stderr line."""
    import io

    from hn.cli.app import main
    from hn.errors import HnError

    err = io.StringIO()
    argv = ["hn", "--home", str(home.root), *args, "--json"]
    code: object = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        old, sys.argv = sys.argv, argv
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = old
    if code:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
        raise HnError(lines[0])


def relayed_trio(h: Harness) -> tuple[Peer, Peer, Peer]:
    """alice, bob and carol with nodes (no DHT), all federated; bob has registered alice's
    node as his relay and pushed to it."""
    alice, bob, carol = h.add_people("alice", "bob", "carol")
    for peer in (alice, bob, carol):
        h.start_node(peer, dht=False)
    h.federate_all([alice, bob, carol])
    h.hn_json(bob, "mcp", "relay", "register", alice.did, "--url", alice.url)
    assert h.hn_json(bob, "mcp", "relay", "push")["ok"] is True
    return alice, bob, carol
