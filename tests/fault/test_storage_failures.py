"""This machine's storage failing outside hn's own atomic writers (SQLite state, plain
files, background tasks): a clear one-line error from the CLI, a JSON 507 from the node,
and background work that carries on once the disk recovers."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hn.errors import DiskError, HnError, NetworkError, os_reason, storage_failure
from hn.node import app as node_app
from hn.relay import node_plugin as relay_plugin
from hn.relay.store import RelayStore
from hn.vault import atomic
from tests.support import hn_in_process as hn
from tests.support import logged, make_person, sqlite_full, start_node


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO])
def test_storage_errnos_are_disk_errors(code: int) -> None:
    exc = OSError(code, "it failed", "/vault/file")
    failure = storage_failure(exc)
    assert isinstance(failure, DiskError) and failure.message == "it failed (/vault/file)" == os_reason(exc)
    assert failure.http_status == 507


def test_other_failures_are_not_disk_errors() -> None:
    assert storage_failure(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert storage_failure(ValueError("a bug")) is None
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE t (x UNIQUE)")
        db.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError) as caught:
            db.execute("INSERT INTO t VALUES (1)")
    finally:
        db.close()
    assert storage_failure(caught.value) is None
    full = storage_failure(sqlite_full())
    assert full is not None and full.message == "state database: database or disk is full"


def test_the_cli_names_a_full_state_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not 'internal error': the user learns it is this machine's disk."""
    home, _ = make_person(tmp_path, "alice")
    full = sqlite_full()

    def no_room(*args: Any, **kwargs: Any) -> None:
        raise full

    monkeypatch.setattr("hn.node.state.NodeState.__init__", no_room)
    with pytest.raises(HnError) as caught:
        hn(home, "mcp", "federate", "list")
    assert caught.value.message == "error: this machine's storage failed: state database: database or disk is full"


def test_the_cli_names_any_other_failed_system_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, _ = make_person(tmp_path, "alice")

    def gone(*args: Any, **kwargs: Any) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "sync/node.sqlite3")

    monkeypatch.setattr("hn.node.state.NodeState.__init__", gone)
    with pytest.raises(HnError) as caught:
        hn(home, "mcp", "federate", "list")
    assert caught.value.message == "error: No such file or directory (sync/node.sqlite3)"


def test_a_file_where_a_folder_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file\n")
    for target in (tmp_path / "notes" / "x.json", tmp_path / "notes" / "deeper" / "x.json"):
        with pytest.raises(DiskError, match=rf"could not write {target}: {tmp_path / 'notes'} is a file, not a folder"):
            atomic.write_bytes(target, b"{}")
    assert (tmp_path / "notes").read_text() == "a file\n"


async def test_a_node_answers_507_when_its_state_database_is_full(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed request whose nonce cannot be recorded: 507 with a JSON body, not a 500."""
    bob_home, _ = make_person(tmp_path, "bob")
    alice_home, alice = make_person(tmp_path, "alice")
    from hn.backup import client
    from hn.backup.create import create
    from hn.proto.canonical import canonical
    from hn.vault import identities

    identities.import_contact(bob_home, canonical(alice.doc))
    result = create(alice_home, alice, tmp_path / "out")
    node, url = await start_node(bob_home, mirror=False)
    try:
        assert node.ctx is not None
        full = sqlite_full()

        def no_room(*args: Any, **kwargs: Any) -> bool:
            raise full

        monkeypatch.setattr(node.ctx.state, "remember_nonce", no_room)
        with pytest.raises(NetworkError, match="HTTP 507 insufficient_storage"):
            await client.push(alice.keys, url, result.header, result.payload_path)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as resp:
            assert resp.status == 200  # the node itself carries on
    finally:
        await node.stop()


async def test_a_failed_background_task_is_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The relay's pruner meets an I/O error twice: it is logged and restarted, with a
    growing pause, instead of stopping for the rest of the node's life."""
    home, _ = make_person(tmp_path, "bob")
    calls: list[float] = []
    real = RelayStore.prune

    def flaky(self: RelayStore, now: float) -> list[str]:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) <= 2:
            raise OSError(errno.EIO, "Input/output error", "relay/record.json")
        return real(self, now)

    monkeypatch.setattr(RelayStore, "prune", flaky)
    monkeypatch.setattr(node_app, "RESTART_FIRST", 0.05)
    with logged(caplog, "hn.node") as events:
        node, _ = await start_node(home)
        try:
            for _ in range(200):
                if len(calls) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert len(calls) >= 3, calls
            assert calls[2] - calls[1] >= calls[1] - calls[0] >= 0.05  # the pause doubles
            records = events("background.storage_failure")
            assert [r.hn["restart_in"] for r in records[:2]] == [0.05, 0.1]  # type: ignore[attr-defined]
            assert "Input/output error" in records[0].hn["error"]  # type: ignore[attr-defined]
        finally:
            await node.stop()


async def test_a_task_that_ran_well_restarts_after_the_first_pause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Two quick failures double the pause; a failure after a long good run is a new one
    and waits only the first pause again, not the doubled one."""
    home, _ = make_person(tmp_path, "bob")
    failures = 0
    good_since: float | None = None
    real = RelayStore.prune

    def flaky(self: RelayStore, now: float) -> list[str]:
        nonlocal failures, good_since
        at = asyncio.get_running_loop().time()
        # Fails twice at once, then runs well for 0.4 s (past RESTART_RESET_AFTER), then
        # fails a third and last time.
        if failures < 2 or (failures == 2 and good_since is not None and at - good_since > 0.4):
            failures += 1
            raise OSError(errno.EIO, "Input/output error", "relay/record.json")
        if good_since is None:
            good_since = at
        return real(self, now)

    monkeypatch.setattr(RelayStore, "prune", flaky)
    monkeypatch.setattr(node_app, "RESTART_FIRST", 0.05)
    monkeypatch.setattr(node_app, "RESTART_RESET_AFTER", 0.3)
    monkeypatch.setattr(relay_plugin, "PRUNE_EVERY", 0.02)
    with logged(caplog, "hn.node") as events:
        node, _ = await start_node(home)
        try:
            for _ in range(300):
                if len(events("background.storage_failure")) >= 3:
                    break
                await asyncio.sleep(0.02)
            restarts = [r.hn["restart_in"] for r in events("background.storage_failure")]  # type: ignore[attr-defined]
            assert restarts == [0.05, 0.1, 0.05]
        finally:
            await node.stop()


def test_an_unreadable_event_log_is_a_disk_failure_not_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error on the event log sends the user to the disk, not to look for tampering."""
    home, _ = make_person(tmp_path, "alice")
    real = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self.parent.name == "events":
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(HnError) as caught:
        hn(home, "vault", "verify")
    assert caught.value.message == "error: cannot read event log entry 000000000001.json: Input/output error"
