"""`hn vault backup prune`: nightly backups do not fill the disk, and no kept chain breaks."""

from __future__ import annotations

from pathlib import Path

from tests.support import run_hn, run_json, vault_with_notes


def test_prune_keeps_the_newest_with_their_bases_and_they_still_restore(tmp_path: Path) -> None:
    vault = vault_with_notes(tmp_path, 3, lines=20)
    made = []
    for night in range(4):
        (vault / "personal" / "diary.txt").write_text(f"night {night}\n")
        args = ["--scope", "delta"] if night % 2 else []
        made.append(run_json(vault, "vault", "backup", "create", *args))
    # full0, delta1 (on full0), full2, delta3 (on full2)
    assert [m["scope"] for m in made] == ["full", "delta", "full", "delta"]

    plan = run_json(vault, "vault", "backup", "prune", "--keep", "1", "--dry-run")
    assert [r["id"] for r in plan["removed"]] == [made[0]["id"], made[1]["id"]]
    assert all(Path(m["header"]).exists() for m in made)
    human = run_hn(vault, "vault", "backup", "prune", "--keep", "1", "--dry-run").stdout
    assert "would be removed" in human and made[0]["id"] in human

    done = run_json(vault, "vault", "backup", "prune", "--keep", "1")
    assert done["freed_bytes"] == plan["freed_bytes"] > 0
    assert not Path(made[0]["payload"]).exists() and not Path(made[1]["header"]).exists()
    listed = run_json(vault, "vault", "backup", "list")["backups"]
    assert [b["id"] for b in listed] == [made[2]["id"], made[3]["id"]] and all(b["local"] for b in listed)
    # The kept delta still restores, through its kept base.
    restored = run_json(vault, "vault", "backup", "restore", "--path", made[3]["header"],
                        "--into", str(tmp_path / "back"))
    assert restored["merkle_root"] == made[3]["merkle_root"]
    assert (tmp_path / "back" / "personal" / "diary.txt").read_text() == "night 3\n"
    assert "nothing to remove" in run_hn(vault, "vault", "backup", "prune", "--keep", "1").stdout


def test_prune_usage_errors_exit_2_and_remove_nothing(tmp_path: Path) -> None:
    vault = vault_with_notes(tmp_path, 1)
    made = run_json(vault, "vault", "backup", "create")
    for keep in ("0", "-3", "many"):
        proc = run_hn(vault, "vault", "backup", "prune", "--keep", keep, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    proc = run_hn(vault, "vault", "backup", "prune", check=False)
    assert proc.returncode == 2 and "--keep" in proc.stderr
    assert Path(made["header"]).exists() and Path(made["payload"]).exists()


def test_prune_leaves_the_base_of_a_delta_being_made(tmp_path: Path) -> None:
    from hn.backup import local

    vault = vault_with_notes(tmp_path, 2)
    old = run_json(vault, "vault", "backup", "create")
    (vault / "personal" / "diary.txt").write_text("later\n")
    newer = run_json(vault, "vault", "backup", "create")
    # What `create --scope delta --base OLD` holds while it runs.
    with local.holding_base(Path(old["header"])):
        done = run_json(vault, "vault", "backup", "prune", "--keep", "1")
        human = run_hn(vault, "vault", "backup", "prune", "--keep", "1").stdout
    assert done["in_use"] == [old["id"]] and done["removed"] == [] and done["failed"] == []
    assert sorted(done["kept"]) == sorted([old["id"], newer["id"]])
    assert f"kept {old['id']}: it is the base of a delta being made" in human
    assert Path(old["header"]).exists() and Path(old["payload"]).exists()
    # Once nothing holds it, it goes.
    assert [r["id"] for r in run_json(vault, "vault", "backup", "prune", "--keep", "1")["removed"]] == [old["id"]]
