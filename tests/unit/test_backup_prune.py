"""Pruning local backups: the newest N, their bases, and what the next pushed delta needs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from hn.backup import create, local, snapshot
from hn.errors import InputError, NotFound
from hn.vault.home import Home
from hn.vault.identities import Identity


def _make(home: Home, me: Identity, out: Path, base: create.Result | None = None) -> create.Result:
    (home.path("personal") / "note.txt").write_bytes(f"state {len(local.records(home))}".encode())
    return create.create(home, me, out, base=base.header if base else None,
                         on_written=lambda r: local.record_created(home, r))


def _present(result: create.Result) -> bool:
    return result.header_path.exists() and result.payload_path.exists()


def test_prune_keeps_the_newest_and_every_base_they_need(alice: Identity, home: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    full1 = _make(home, alice, out)
    delta1 = _make(home, alice, out, full1)
    full2 = _make(home, alice, out)
    delta2 = _make(home, alice, out, full2)
    delta3 = _make(home, alice, out, delta2)

    plan = local.prune(home, 1, dry_run=True)
    assert plan["dry_run"] and {r["id"] for r in plan["removed"]} == {full1.header["id"], delta1.header["id"]}
    assert all(_present(r) for r in (full1, delta1, full2, delta2, delta3))  # a dry run removes nothing

    done = local.prune(home, 1)
    assert sorted(done["kept"]) == sorted(r.header["id"] for r in (full2, delta2, delta3))
    assert done["freed_bytes"] == plan["freed_bytes"] > 0 and done["failed"] == []
    assert not full1.header_path.exists() and not full1.payload_path.exists() and not delta1.payload_path.exists()
    assert all(_present(r) for r in (full2, delta2, delta3))
    assert [r["id"] for r in local.records(home)] == [r.header["id"] for r in (full2, delta2, delta3)]
    assert local.prune(home, 1)["removed"] == []  # nothing more to do
    with pytest.raises(InputError, match="at least 1"):
        local.prune(home, 0)


def test_the_latest_backup_pushed_to_a_node_stays_and_pushed_records_stay_listed(
        alice: Identity, home: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _make(home, alice, out)
    local.record_pushed(home, old.header["id"], "http://friend:7733", None, "2026-01-01T00:00:00Z")
    pushed = _make(home, alice, out)
    local.record_pushed(home, pushed.header["id"], "http://friend:7733", None, "2026-01-02T00:00:00Z")
    newest = _make(home, alice, out)

    done = local.prune(home, 1)
    assert [r["id"] for r in done["removed"]] == [old.header["id"]] and done["removed"][0]["record_kept"]
    assert _present(pushed) and _present(newest) and not old.header_path.exists()
    # The next delta for that node still finds its base here.
    assert local.latest_pushed(home, "http://friend:7733")["id"] == pushed.header["id"]
    with local.holding_base(Path(local.latest_pushed(home, "http://friend:7733")["header"])) as base:
        assert base["id"] == pushed.header["id"]
    # The pushed backup's record stays, to say where it went.
    assert old.header["id"] in [r["id"] for r in local.records(home)]


def test_a_damaged_record_removes_only_files_named_after_its_backup(
        alice: Identity, home: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _make(home, alice, out)
    _make(home, alice, out)
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    registry = home.path(*snapshot.REGISTRY)
    raw = json.loads(registry.read_bytes())
    raw["backups"][0]["payload"] = str(precious)
    registry.write_text(json.dumps(raw))
    local.prune(home, 1)
    assert precious.read_text() == "mine" and not first.header_path.exists()
    # Its payload, left without a header, is what the next create into that folder sweeps.
    size = first.payload_path.stat().st_size
    assert create.sweep_incoming(out) == size and not first.payload_path.exists()


def test_a_base_held_by_a_delta_being_made_is_kept_until_the_delta_is_recorded(
        alice: Identity, home: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _make(home, alice, out)
    newer = _make(home, alice, out)
    (home.path("personal") / "note.txt").write_bytes(b"changed since the old backup")
    with local.holding_base(old.header_path) as base:
        # A prune while the delta on the old backup is being made: that base stays.
        during = local.prune(home, 1)
        assert during["in_use"] == [old.header["id"]] and during["removed"] == []
        assert sorted(during["kept"]) == sorted([old.header["id"], newer.header["id"]]) and _present(old)
        delta = create.create(home, alice, out, base=base, on_written=lambda r: local.record_created(home, r))
    assert delta.header["base_backup"] == old.header["id"]
    # Once recorded, the delta is the newest backup, and its chain keeps the old one.
    after = local.prune(home, 1)
    assert after["in_use"] == [] and [r["id"] for r in after["removed"]] == [newer.header["id"]]
    assert _present(old) and _present(delta) and not _present(newer)


def test_a_delta_whose_base_a_prune_removed_first_says_so(alice: Identity, home: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _make(home, alice, out)
    _make(home, alice, out)
    assert [r["id"] for r in local.prune(home, 1)["removed"]] == [old.header["id"]]
    with pytest.raises(NotFound, match="cannot read backup header"):
        with local.holding_base(old.header_path):
            pass


def test_a_base_removed_between_its_open_and_its_lock_is_refused(
        alice: Identity, home: Home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _make(home, alice, out)
    _make(home, alice, out)
    # A prune holds the old header exclusively (as it does while it removes it) when the
    # delta opens it; the delta's lock waits, and is granted once that header is gone.
    claim = local._claimed(old.header_path)
    assert claim.__enter__() is True
    outcome: list[BaseException | dict] = []

    def take_base() -> None:
        try:
            with local.holding_base(old.header_path) as base:
                outcome.append(base)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    taker = threading.Thread(target=take_base)
    taker.start()
    inode = old.header_path.stat().st_ino
    deadline = time.monotonic() + 30
    while not _lock_waiter_on(inode) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _lock_waiter_on(inode) and outcome == []  # waiting for the prune's lock
    old.header_path.unlink()
    claim.__exit__(None, None, None)
    taker.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], NotFound) and "was removed" in str(outcome[0])


def _lock_waiter_on(inode: int) -> bool:
    """Whether some process waits for a lock on the file ``inode`` (Linux's /proc/locks
    lists each waiter as "->" after the lock it waits for)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[fields.index("->") + 5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False
