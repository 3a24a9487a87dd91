"""Pruning local backups: the newest N, their bases, and what the next pushed delta needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hn.backup import create, local, snapshot
from hn.errors import InputError
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
    assert local.read_base(Path(local.latest_pushed(home, "http://friend:7733")["header"]))
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
