"""Federation between real nodes on loopback: incremental cursors, tombstones, the slice cache,
rollback protection across restarts, and the per-peer backoff schedule."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest

from hn.errors import RollbackError
from hn.federation import service
from hn.federation.cache import peer_dir
from hn.federation.node_plugin import Worker
from hn.federation.sync import BACKOFF_CAP, KEEP_SLICES, Syncer
from hn.node.app import Node
from hn.node.state import NodeState
from hn.proto import timefmt
from hn.proto.canonical import loads_canonical
from hn.proto.index import verify_slice
from hn.vault import identities, store
from hn.vault.home import Home
from tests.support import free_port, logged, sqlite_full


class Vault:
    def __init__(self, root: Path, name: str) -> None:
        self.home = Home(root / name)
        self.home.ensure()
        self.me = identities.create(self.home, name)
        self.files = root / f"{name}-files"
        self.files.mkdir()
        self.node: Node | None = None
        self.url = ""

    def publish(self, *names: str) -> list[str]:
        paths = []
        for name in names:
            path = self.files / name
            path.write_text(f"{self.me.alias}: {name}\n")
            paths.append(path)
        return [e["id"] for e in store.add_files(self.home, self.me.keys, paths, True)]

    async def start(self, **settings: Any) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.node = Node(self.home, {"listen": f"127.0.0.1:{port}", "public_url": self.url, "no_dht": True,
                                     "bootstrap": [], "sync_interval": 3600, **settings})
        await self.node.start()

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.stop()
            self.node = None

    def presence(self) -> dict[str, Any]:
        from hn.vault import presence

        doc = presence.current(self.home, self.me.did)
        assert doc is not None
        return doc


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Vault, Vault]]:
    """bob publishes with a running node; alice consumes from the CLI side (no node of her own)."""
    bob, alice = Vault(tmp_path, "bob"), Vault(tmp_path, "alice")
    bob.publish("one.txt", "two.txt", "three.txt")
    await bob.start()
    await service.add(alice.home, bob.me.did, bob.url)
    try:
        yield bob, alice
    finally:
        await bob.stop()


async def refresh(alice: Vault, mirror: bool = False) -> dict[str, Any]:
    results = await service.refresh(alice.home, mirror=mirror)
    assert len(results) == 1
    return results[0]


def peer_row(alice: Vault, did: str) -> dict[str, Any]:
    return next(p for p in service.listing(alice.home) if p["did"] == did)


async def test_incremental_refresh(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    first = await refresh(alice)
    assert first["ok"] and first["entries"] == 3 and first["size"] == 3
    assert first["root"] == bob.presence()["index"]["root"]
    again = await refresh(alice)
    assert again["ok"] and again["not_modified"] and again["entries"] == 0
    new = bob.publish("four.txt")
    one = await refresh(alice)
    assert one["ok"] and one["entries"] == 1 and one["size"] == 4 and not one["not_modified"]
    assert new[0] in held_ids(alice, bob) and len(held_ids(alice, bob)) == 4
    row = peer_row(alice, bob.me.did)
    assert row["health"] == "ok" and row["root"] == bob.presence()["index"]["root"] and row["last_sync"]


def held_ids(alice: Vault, bob: Vault) -> set[str]:
    state = NodeState(alice.home)
    try:
        return {r[0] for r in state.db.execute("SELECT id FROM peer_entries WHERE did=?", (bob.me.did,))}
    finally:
        state.close()


async def test_unpublish_removes_the_entry(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    await refresh(alice)
    gone = store.load_catalog(bob.home).index_entries()[0]["id"]
    store.set_published(bob.home, bob.me.keys, [gone], False)
    result = await refresh(alice)
    assert result["ok"] and result["entries"] == 1 and result["size"] == 2
    assert gone not in held_ids(alice, bob)
    assert result["root"] == bob.presence()["index"]["root"]


async def test_cache_keeps_slices_as_signed(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    await refresh(alice, mirror=True)
    folder = peer_dir(alice.home, bob.me.did)
    assert loads_canonical((folder / "identity.json").read_bytes())["did"] == bob.me.did
    presence = loads_canonical((folder / "presence.json").read_bytes())
    history = identities.require_history(alice.home, bob.me.did)
    slices = sorted(folder.glob("index-*.json"))
    assert [p.name for p in slices] == ["index-0.json"]
    verify_slice(loads_canonical(slices[0].read_bytes()), history, presence)
    for entry in store.load_catalog(bob.home).index_entries():
        mirrored = folder / "artifacts" / entry["path"]
        assert mirrored.read_bytes() == store.object_path(bob.home, entry["digest"]).read_bytes()


async def test_a_full_disk_while_mirroring_is_reported_as_this_machine_s_disk(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    real_fdopen = os.fdopen

    class FullDisk(io.BufferedWriter):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        # Only the mirror's downloads (os.fdopen is the os module's, shared by atomic writes).
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".mirror."):
            return FullDisk(io.FileIO(fd, "w"))
        return real_fdopen(fd, mode, *args, **kwargs)

    assert (await refresh(alice))["ok"]  # the index; nothing mirrored yet
    before = peer_row(alice, bob.me.did)
    with mock.patch("hn.federation.sync.os.fdopen", fdopen):
        result = await refresh(alice, mirror=True)
    assert not result["ok"]
    assert result["error"].startswith("this node: could not store artefact"), result
    assert "No space left on device" in result["error"] and "HTTP" not in result["error"], result
    # The peer answered every request: its index is taken, its health and failure count stand.
    row = peer_row(alice, bob.me.did)
    assert (row["health"], row["failures"]) == (before["health"], before["failures"]) == ("ok", 0), row
    assert row["last_error"] == result["error"] and row["last_sync"] >= before["last_sync"]
    state = NodeState(alice.home)
    try:
        assert state.counters().get("sync_local_failure") == 1
        assert state.counters().get("sync_failure", 0) == 0
    finally:
        state.close()
    folder = peer_dir(alice.home, bob.me.did) / "artifacts"
    assert not list(folder.rglob(".mirror.*")), "no temp file is left behind"
    # With room again, the next sync mirrors everything.
    result = await refresh(alice, mirror=True)
    assert result["ok"] and result["mirrored"] == 3
    assert peer_row(alice, bob.me.did)["last_error"] is None
    for entry in store.load_catalog(bob.home).index_entries():
        assert (folder / entry["path"]).read_bytes() == store.object_path(bob.home, entry["digest"]).read_bytes()


async def test_prune_keeps_the_last_generations(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    await refresh(alice)
    folder = peer_dir(alice.home, bob.me.did)
    for i in range(KEEP_SLICES + 3):
        (folder / f"index-{1000 + i}.json").write_bytes(b"{}")
    bob.publish("more.txt")
    await refresh(alice)
    assert len(list(folder.glob("index-*.json"))) == KEEP_SLICES


async def test_rollback_refused_across_restart(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    await refresh(alice)
    old = bob.presence()
    bob.publish("newer.txt")
    await refresh(alice)
    # a fresh state connection, as after a restart, still holds the high-water mark
    state = NodeState(alice.home)
    try:
        from hn.proto.canonical import doc_digest

        with pytest.raises(RollbackError):
            state.check_and_record_seq(bob.me.did, "presence@2", old["seq"], doc_digest(old))
    finally:
        state.close()
    assert peer_row(alice, bob.me.did)["health"] == "ok"


async def test_offline_peer_backs_off_and_recovers(pair: tuple[Vault, Vault]) -> None:
    bob, alice = pair
    await refresh(alice)
    await bob.stop()
    clock = [timefmt.now()]
    delays = []
    with mock.patch("hn.proto.timefmt.now", side_effect=lambda: clock[0]):
        for _ in range(14):
            result = await refresh(alice)
            assert not result["ok"]
            state = NodeState(alice.home)  # reopened every round: the schedule survives restarts
            row = state.peer(bob.me.did)
            state.close()
            assert row is not None
            delays.append(row["next_attempt"] - clock[0])
            clock[0] = row["next_attempt"]
    assert all(0 < d <= BACKOFF_CAP for d in delays)
    assert delays[5] > delays[0] * 4, f"backoff must grow: {delays}"
    row = peer_row(alice, bob.me.did)
    assert row["health"] == "failing" and row["failures"] == 14 and "node:" in row["last_error"]
    await bob.start()
    await service.add(alice.home, bob.me.did, bob.url)  # bob came back on another port
    result = await refresh(alice)
    assert result["ok"] and peer_row(alice, bob.me.did)["health"] == "ok"


async def tick(worker: Worker) -> None:
    """One tick of the worker, and the syncs it started, to their end."""
    await worker.tick()
    await worker.settle()


async def test_worker_honours_the_schedule(pair: tuple[Vault, Vault], tmp_path: Path) -> None:
    """The background worker only syncs peers whose next attempt is due (fake clock)."""
    bob, alice = pair
    await alice.start(sync_interval=600)
    assert alice.node is not None and alice.node.ctx is not None
    ctx = alice.node.ctx
    try:
        worker = Worker(ctx)
        async with aiohttp.ClientSession() as session:
            worker.session = session
            base = timefmt.now()
            with mock.patch("hn.proto.timefmt.now", return_value=base):
                await tick(worker)
            first = ctx.state.peer(bob.me.did)
            assert first is not None and first["health"] == "ok"
            with mock.patch("hn.proto.timefmt.now", return_value=base + 10):
                await tick(worker)
            assert ctx.state.peer(bob.me.did)["last_attempt"] == first["last_attempt"]  # type: ignore[index]
            with mock.patch("hn.proto.timefmt.now", return_value=base + 601):
                await tick(worker)
            assert ctx.state.peer(bob.me.did)["last_attempt"] == base + 601  # type: ignore[index]
    finally:
        await alice.stop()


async def test_a_full_state_database_holds_the_peer_instead_of_retrying_every_tick(
        pair: tuple[Vault, Vault], caplog: pytest.LogCaptureFixture) -> None:
    """A sync that cannot record its outcome (the node's SQLite state is full) does not
    escape the worker, is logged, and is not tried again before the sync interval."""
    bob, alice = pair
    await alice.start(sync_interval=600)
    assert alice.node is not None and alice.node.ctx is not None
    ctx = alice.node.ctx
    for task in alice.node.tasks:  # the node's own worker would share the faulty state below
        task.cancel()
    full = sqlite_full()
    attempts = []

    def no_room(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise full

    try:
        with logged(caplog, "hn.federation") as events:
            worker = Worker(ctx)
            async with aiohttp.ClientSession() as session:
                worker.session = session
                base = timefmt.now()
                with mock.patch.object(ctx.state, "upsert_peer", no_room), \
                        mock.patch.object(ctx.state, "update_peer", no_room):
                    with mock.patch("hn.proto.timefmt.now", return_value=base):
                        await tick(worker)
                    assert len(attempts) == 2  # the sync, then recording its local failure
                    assert worker.held[bob.me.did] == base + 600
                    with mock.patch("hn.proto.timefmt.now", return_value=base + 10):
                        await tick(worker)
                    assert len(attempts) == 2, "held: not retried at the next tick"
                    # A notification from the peer still wakes it.
                    worker.wake(bob.me.did)
                    with mock.patch("hn.proto.timefmt.now", return_value=base + 20):
                        await tick(worker)
                    assert len(attempts) == 4
                records = events("federation.sync.unrecorded")
                assert len(records) == 2 and "state database: database or disk is full" in str(records[0].hn)
                # With room again, the peer syncs once its hold is over.
                with mock.patch("hn.proto.timefmt.now", return_value=base + 621):
                    await tick(worker)
                row = ctx.state.peer(bob.me.did)
                assert row is not None and row["health"] == "ok" and bob.me.did not in worker.held
    finally:
        await alice.stop()


async def test_an_unwritable_peer_folder_is_this_machine_s_failure(pair: tuple[Vault, Vault]) -> None:
    """The per-peer lock cannot be made (a read-only or full disk): the refresh reports this
    node's storage, and the peer's health and failure count are untouched."""
    bob, alice = pair
    assert (await refresh(alice))["ok"]

    real_open = os.open

    def read_only(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("/.lock") and "federation" in str(path):  # the per-peer lock only
            raise OSError(errno.EROFS, "Read-only file system", "peer/.lock")
        return real_open(path, *args, **kwargs)

    with mock.patch("hn.federation.sync.os.open", read_only):
        result = await refresh(alice)
    assert not result["ok"] and result["error"] == "this node: Read-only file system (peer/.lock)", result
    row = peer_row(alice, bob.me.did)
    assert (row["health"], row["failures"], row["last_error"]) == ("ok", 0, result["error"])


async def test_refresh_from_cli_while_the_node_runs(pair: tuple[Vault, Vault]) -> None:
    """The CLI and a running node share the SQLite state and the per-peer lock."""
    import asyncio

    bob, alice = pair
    await alice.start()
    try:
        results = await asyncio.gather(refresh(alice, mirror=True), refresh(alice, mirror=True))
        assert all(r["ok"] for r in results)
        assert json.loads(json.dumps(service.listing(alice.home)))[0]["health"] == "ok"
    finally:
        await alice.stop()


async def test_syncer_pins_only_the_named_did(pair: tuple[Vault, Vault], tmp_path: Path) -> None:
    bob, alice = pair
    from hn.errors import VerificationError

    carol = Vault(tmp_path, "carol")
    state = NodeState(alice.home)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(VerificationError, match="serves the identity of"):
                await Syncer(alice.home, state, alice.me, session).pin_identity(carol.me.did, bob.url)
    finally:
        state.close()


async def test_sync_events_are_logged_as_json(pair: tuple[Vault, Vault], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from hn.node.logs import JsonFormatter

    bob, alice = pair
    caplog.set_level(logging.INFO, logger="hn.federation")
    # Attached directly: another test may have set up the node's own handlers (no propagation).
    with logged(caplog, "hn.federation"):
        await refresh(alice)
        await bob.stop()
        await refresh(alice)
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "hn.federation"]
    success = next(line for line in lines if line["event"] == "federation.sync.success")
    failure = next(line for line in lines if line["event"] == "federation.sync.failure")
    assert success["did"] == bob.me.did and success["ok"] is True and success["size"] == 3
    assert failure["did"] == bob.me.did and failure["level"] == "warning" and failure["error"]


async def test_a_vault_restored_from_a_backup_syncs_again_with_its_friends(
        pair: tuple[Vault, Vault], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bob backs up, publishes more (alice syncs it), then restores the backup: the
    presences and index alice saw after the backup are not bob's any more. bob's next
    presence is signed above them, and alice reads his index afresh instead of refusing
    it as a fork or a rollback."""
    from hn.backup import create, restore

    bob, alice = pair
    full = create.create(bob.home, bob.me, tmp_path / "bob-backups")
    lost = bob.publish("after-the-backup.txt")
    seen = await refresh(alice)
    assert seen["ok"] and lost[0] in held_ids(alice, bob)
    seen_seq = bob.presence()["seq"]

    await bob.stop()  # restored as after losing the machine: with the node stopped
    # The restore comes later than the last signature, not within the same second.
    real_now = timefmt.now
    monkeypatch.setattr(timefmt, "now", lambda: real_now() + 30)
    restore.restore(restore.FileSource(full.header_path.parent), full.header["id"], bob.home, bob.home.root)
    assert bob.presence()["seq"] < seen_seq  # the presence of the backup, older than alice's
    url = bob.url
    await bob.start(listen=url.removeprefix("http://"), public_url=url)  # where alice knows it
    bob.url = url
    assert bob.presence()["seq"] > seen_seq  # signed again at once, above what alice saw
    new = bob.publish("after-the-restore.txt")

    caplog.set_level(logging.INFO, logger="hn.federation")
    with logged(caplog, "hn.federation") as events:
        result = await refresh(alice)
    assert result["ok"], result
    assert held_ids(alice, bob) == {e["id"] for e in store.load_catalog(bob.home).index_entries()}
    assert new[0] in held_ids(alice, bob) and lost[0] not in held_ids(alice, bob)
    assert result["root"] == bob.presence()["index"]["root"]
    assert events("federation.sync.index_reread")
    again = await refresh(alice)  # and from there on, incrementally again
    assert again["ok"] and again["not_modified"]
