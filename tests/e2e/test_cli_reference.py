"""docs/cli.md is generated from --help and must match the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli_ref", ROOT / "tooling" / "gen_cli_ref.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    actual = (ROOT / "docs" / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is out of date: run python tooling/gen_cli_ref.py"
    for command in ("hn id create", "hn doc share", "hn mcp serve", "hn mcp federate refresh", "hn mcp relay push",
                    "hn policy set", "hn smoke m5", "hn status"):
        assert f"`{command}`" in actual, command
