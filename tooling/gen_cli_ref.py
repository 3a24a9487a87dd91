"""Write docs/cli.md, the CLI reference, from the commands' own help texts.

Run: python tooling/gen_cli_ref.py        (tests/e2e/test_cli_reference.py checks it is current)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hn.cli.app import app  # noqa: E402

OUT = ROOT / "docs" / "cli.md"


def param_line(param: Any) -> str:
    text = (getattr(param, "help", None) or "").strip()
    if param.param_type_name == "argument":
        optional = "" if param.required else ", optional"
        label = (param.name or "").upper()
        return f"- `{label}` (argument{optional})" + (f": {text}" if text else "")
    names = ", ".join(f"`{o}`" for o in param.opts)
    default = ""
    if param.default not in (None, False, (), []) and not getattr(param, "is_flag", False):
        default = f" (default: {param.default})"
    return f"- {names}: {text}{default}".rstrip(": ")


def walk(cmd: Any, path: list[str], out: list[str]) -> None:
    title = " ".join(path)
    out.append(f"{'#' * min(len(path) + 1, 4)} `{title}`\n")
    help_text = (cmd.help or "").strip()
    if help_text:
        out.append(help_text.replace("\n", " ") + "\n")
    params = [p for p in cmd.params if "--help" not in p.opts]
    if params:
        out.append("\n".join(param_line(p) for p in params) + "\n")
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(type(cmd).context_class(cmd)):
            sub = cmd.get_command(type(cmd).context_class(cmd), name)
            if sub is not None and not sub.hidden:
                walk(sub, path + [name], out)


def render() -> str:
    root = typer.main.get_command(app)
    out = ["# CLI reference\n", "Generated from the commands' help by `python tooling/gen_cli_ref.py`; "
           "a test fails when it drifts from the code.\n"]
    walk(root, ["hn"], out)
    return "\n".join(out)


def main() -> None:
    OUT.write_text(render())


if __name__ == "__main__":
    main()
