"""Every command and group of `hn` has help text (walks the real command tree)."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from hn.cli.app import app
from tests.support import run_hn


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, command)]
    if hasattr(command, "commands"):  # a group (typer ships its own click classes)
        for name, sub in sorted(command.commands.items()):
            out.extend(walk(sub, (*path, name)))
    return out


def test_every_command_and_group_has_help() -> None:
    root = typer.main.get_command(app)
    commands = walk(root)
    names = {" ".join(p) for p, _ in commands}
    for core in ("id create", "id list", "id use", "id show", "id rotate", "id export", "id import",
                 "id recovery split", "id recovery restore", "doc add", "doc list", "doc share", "doc open",
                 "vault status", "vault verify"):
        assert core in names, f"hn {core} is missing"
    runner = CliRunner()
    for path, command in commands:
        text = (command.help or command.short_help or "").strip()
        assert text, f"`hn {' '.join(path)}` has no help text"
        result = runner.invoke(app, [*path, "--help"], prog_name="hn")
        assert result.exit_code == 0, (path, result.output)
        assert text.split("\n")[0][:30] in " ".join(result.output.split()), path


def test_help_through_the_entry_point() -> None:
    proc = run_hn(None, "id", "recovery", "restore", "--help")
    assert proc.returncode == 0 and "mnemonics" in proc.stdout


def test_command_line_builds_only_the_named_command() -> None:
    from hn.cli.app import build, command_of

    assert command_of(["--home", "vault", "id", "list"]) == "id"
    assert command_of(["--home=/tmp/x", "--log-json", "vault", "backup", "create"]) == "vault"
    assert command_of(["--version"]) is None
    assert command_of(["no-such-command"]) is None
    names = {g.name for g in build("vault").registered_groups}
    assert names == {"vault"}
    full = {g.name for g in build().registered_groups}
    assert {"id", "doc", "vault", "mcp", "discover", "trust", "policy", "smoke"} <= full
    # The backup commands sit under `vault` once, whichever trees were built.
    vault_groups = [g.name for g in build("vault").registered_groups[0].typer_instance.registered_groups]
    assert vault_groups.count("backup") == 1
