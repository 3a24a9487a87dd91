"""Backup creation against the sweep of interrupted creates' payload files, and with a
change-detection cache that cannot be written."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from hn.backup import create, restore
from hn.vault.home import Home
from hn.vault.identities import Identity


def test_a_payload_temp_swept_before_its_lock_is_taken_is_made_again(
        alice: Identity, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another create's sweep can run between the temp file's creation and its lock: the
    sweep removes it (nobody holds it yet), and this create writes into a new one."""
    out = tmp_path / "out"
    real = create.atomic.atomic_writer
    sweeps: list[int] = []

    @contextlib.contextmanager
    def swept_at_once(target: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
        with real(target, mode) as handle:
            if not sweeps:
                sweeps.append(create.sweep_incoming(target.parent))
            yield handle

    monkeypatch.setattr(create.atomic, "atomic_writer", swept_at_once)
    result = create.create(home, alice, out)
    assert sweeps == [0]  # the first temp file, empty, was taken
    assert sorted(p.name for p in out.iterdir()) == sorted([result.header_path.name, result.payload_path.name])
    checked = restore.verify_quick(result.header, result.payload_path, home, None)
    assert checked["payload_digest"] == result.header["payload"]["digest"]
