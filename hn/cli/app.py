"""The `hn` entry point: the one place where hn errors become messages and exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer

from hn import __version__
from hn.cli import doc_cmd, id_cmd, vault_cmd
from hn.cli.context import STATE
from hn.errors import HnError

app = typer.Typer(
    name="hn",
    help="hn: your data vault and federation node.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    home: Optional[Path] = typer.Option(None, "--home", help="Vault folder (default $HN_HOME or ~/.human-net)."),
    log_json: bool = typer.Option(False, "--log-json", help="Structured JSON logs on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    STATE.home_dir = home
    STATE.log_json = log_json


app.add_typer(id_cmd.app, name="id")
app.add_typer(doc_cmd.app, name="doc")
app.add_typer(vault_cmd.app, name="vault")


def _register_optional() -> None:
    """Capability front ends register themselves here as they exist."""
    from hn.optional import import_optional

    for module, name in (
        ("hn.cli.backup_cmd", None),
        ("hn.cli.mcp_cmd", "mcp"),
        ("hn.cli.discover_cmd", "discover"),
        ("hn.cli.trust_cmd", "trust"),
        ("hn.cli.policy_cmd", "policy"),
        ("hn.cli.status_cmd", None),
        ("hn.cli.smoke_cmd", "smoke"),
    ):
        mod = import_optional(module)
        if mod is None:
            continue
        mod.register(app) if name is None else app.add_typer(mod.app, name=name)


_register_optional()


def main() -> None:
    import logging

    # Library log lines stay quiet in the CLI: results and errors are its output. The node
    # (`hn mcp serve`) installs real handlers.
    logging.getLogger("hn").addHandler(logging.NullHandler())
    try:
        # Standalone mode: Typer reports usage errors itself (exit 2) and turns
        # typer.Exit into the exit code; every hn error reaches the handlers below.
        app(prog_name="hn")
    except HnError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug: say so in one line; HN_DEBUG=1 shows the traceback
        if os.environ.get("HN_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(exc).__name__}: {exc}); rerun with HN_DEBUG=1 for details",
              file=sys.stderr)
        sys.exit(1)
