"""One node per vault: a second `hn mcp serve` on the same vault is refused, and so is a
restore that would swap the vault away under a running node."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hn.errors import InputError
from hn.vault import serving
from tests.support import make_person, run_hn, run_json, start_node, tree_digest


async def test_a_second_node_on_the_same_vault_is_refused(tmp_path: Path) -> None:
    home, _ = make_person(tmp_path, "alice")
    first, _ = await start_node(home)
    try:
        node_file = home.path("run", "node.json").read_bytes()
        with pytest.raises(InputError, match=rf"a node is already serving {home.root} \(pid {os.getpid()}\); "
                                             "stop it first"):
            await start_node(home)
        # The refused one left the running one's record alone, and so does a refused `hn mcp serve`.
        assert home.path("run", "node.json").read_bytes() == node_file
        refused = run_hn(home.root, "mcp", "serve", "--listen", "127.0.0.1:0", "--no-dht", check=False)
        assert refused.returncode == 1 and "a node is already serving" in refused.stderr, refused.stderr
        assert home.path("run", "node.json").read_bytes() == node_file
        assert serving.served(home.root) == f"a node is serving {home.root} (pid {os.getpid()})"
    finally:
        await first.stop()
    assert serving.served(home.root) is None
    again, _ = await start_node(home)  # the lock went with the node
    await again.stop()


async def test_a_restore_over_a_served_vault_is_refused(tmp_path: Path) -> None:
    home, _ = make_person(tmp_path, "alice")
    full = run_json(home.root, "vault", "backup", "create", "--out", str(tmp_path / "backups"))
    node, _ = await start_node(home)
    try:
        before = tree_digest(home.path("personal"))
        proc = run_hn(home.root, "vault", "backup", "restore", "--path", full["header"], "--into", str(home.root),
                      "--force", check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (f"error: a node is serving {home.root} (pid {os.getpid()}); stop it before "
                                       "restoring over its vault (it would go on with the old one)")
        assert tree_digest(home.path("personal")) == before
        assert json.loads(home.path("run", "node.json").read_bytes())["pid"] == os.getpid()
    finally:
        await node.stop()
    done = run_json(home.root, "vault", "backup", "restore", "--path", full["header"], "--into", str(home.root))
    assert done["ok"]


async def test_status_says_running_only_while_a_node_holds_the_vault(tmp_path: Path) -> None:
    home, _ = make_person(tmp_path, "alice")
    assert run_json(home.root, "status")["node"] == {"running": False}
    node, url = await start_node(home)
    try:
        running = run_json(home.root, "status")["node"]
        assert running["running"] is True and running["base_url"] == url and running["pid"] == os.getpid()
    finally:
        await node.stop()
    # A node that died without removing run/node.json is not running either.
    home.path("run", "node.json").write_text(json.dumps({"pid": os.getpid(), "base_url": url}))
    assert run_json(home.root, "status")["node"] == {"running": False}


async def test_a_node_file_that_is_not_an_object_says_nothing_of_where_it_listens(tmp_path: Path) -> None:
    home, _ = make_person(tmp_path, "alice")
    node, _ = await start_node(home)
    try:
        home.path("run", "node.json").write_text("[1, 2]")
        assert run_json(home.root, "status")["node"] == {"running": True}
    finally:
        await node.stop()
