"""`hn vault backup create` keeps its own house in order: no other writer's temp file in a
backup, no payload temp file left behind by a killed create, absolute paths in the local
registry, and a backup recorded even when the change-detection cache cannot be written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import run_hn, run_json


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"note-{i}.md").write_text(f"# note {i}\n" + "line\n" * (i * 40))
    run_json(home, "doc", "add", str(docs))
    return home


def test_temp_files_of_other_hn_writers_are_not_backed_up(vault: Path, tmp_path: Path) -> None:
    # What `doc add`, `doc share` and a mirroring sync hold while they write: mkstemp
    # files beside their targets, renamed into place only when whole.
    in_progress = {
        "personal/objects/.add.k2j4x9q1": b"half of a large document",
        "shards/.seal.a8d0_3zq": b"half of a sealed shard",
        "cache/mirror/.mirror.0p9o8i7u": b"half of a friend's artefact",
        "personal/.catalog.json.x1y2z3w4.tmp": b"half of a catalog",
    }
    for rel, data in in_progress.items():
        (vault / rel).parent.mkdir(parents=True, exist_ok=True)
        (vault / rel).write_bytes(data)
    # A dot-file of the vault's own that only looks alike is still backed up.
    (vault / "personal" / ".added").write_bytes(b"kept")
    full = run_json(vault, "vault", "backup", "create", "--include-cache", "--out", str(tmp_path / "bk"))
    paths = {e["path"] for e in json.loads(Path(full["header"]).read_bytes())["entries"]}
    assert not paths & set(in_progress), sorted(paths & set(in_progress))
    assert "personal/.added" in paths and "personal/catalog.json" in paths
    run_hn(vault, "vault", "verify")
