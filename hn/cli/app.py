"""The `hn` entry point: the one place where hn errors become messages and exit codes."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import typer

try:  # Typer 0.28 carries its own copy of Click; earlier releases use Click itself
    from typer._click import exceptions as cli_errors
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click import exceptions as cli_errors  # type: ignore[no-redef]

from hn import __version__
from hn.cli.context import STATE
from hn.errors import HnError, UsageError, os_reason, storage_failure

# Top-level command -> the modules that provide it. A module with a group name is added as
# that sub-app; one without (None) registers itself (``register(root)``). `hn vault backup
# create` then imports the vault and backup front ends only, not every capability: a
# Python start-up is most of a small command's time. Modules that may be left out of an
# installation are skipped when absent.
COMMANDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "id": (("hn.cli.id_cmd", "id"),),
    "doc": (("hn.cli.doc_cmd", "doc"),),
    "vault": (("hn.cli.vault_cmd", "vault"), ("hn.cli.backup_cmd", None)),
    "mcp": (("hn.cli.mcp_cmd", "mcp"),),
    "discover": (("hn.cli.discover_cmd", "discover"),),
    "trust": (("hn.cli.trust_cmd", "trust"),),
    "policy": (("hn.cli.policy_cmd", "policy"),),
    "status": (("hn.cli.status_cmd", None),),
    "smoke": (("hn.cli.smoke_cmd", "smoke"),),
}
REQUIRED = ("hn.cli.id_cmd", "hn.cli.doc_cmd", "hn.cli.vault_cmd")
_BUILT: dict[str | None, typer.Typer] = {}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hn {__version__}")
        raise typer.Exit()


def root(
    home: Optional[str] = typer.Option(None, "--home", help="Vault folder (default $HN_HOME or ~/.human-net)."),
    log_json: bool = typer.Option(False, "--log-json", help="Structured JSON logs on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if home is not None and not home.strip():  # most often an unset variable: `--home "$DIR"`
        raise UsageError("--home is empty: give the vault's folder (--home . for the current one)")
    STATE.home_dir = Path(home) if home is not None else None
    STATE.log_json = log_json


def build(only: str | None = None) -> typer.Typer:
    """The `hn` app with every command, or with the one top-level command ``only`` ("": none)."""
    if only in _BUILT:
        return _BUILT[only]
    from hn.optional import import_optional

    cli = typer.Typer(name="hn", help="hn: your data vault and federation node.", no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False)
    cli.callback()(root)
    for command, modules in COMMANDS.items():
        if only is not None and command != only:
            continue
        for module, group in modules:
            mod = importlib.import_module(module) if module in REQUIRED else import_optional(module)
            if mod is None:
                continue
            mod.register(cli) if group is None else cli.add_typer(mod.app, name=group)
    _BUILT[only] = cli
    return cli


def command_of(argv: list[str]) -> str | None:
    """The top-level command named on a command line, None when there is none we know."""
    args = iter(argv)
    for arg in args:
        if arg == "--home":
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def __getattr__(name: str) -> Any:
    # ``app``: the whole command tree, built on first use (docs, help tests).
    if name == "app":
        return build()
    raise AttributeError(name)


def _invoke(cli: typer.Typer) -> None:
    """Run the command tree. Typer's own usage errors (an unknown option, a value of the
    wrong type) become one `error:` line and exit 2, like hn's; Typer turns a Ctrl-C into
    exit 130, which says "interrupted" unless the command said so itself."""
    try:
        code = cli(prog_name="hn", standalone_mode=False)
    except cli_errors.NoArgsIsHelpError as exc:  # `hn vault`: its help is shown already
        sys.exit(exc.exit_code)
    except cli_errors.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message().rstrip(".") + hint
        raise (UsageError(message) if exc.exit_code == UsageError.exit_code else HnError(message)) from None
    except typer.Abort:  # end of input at a prompt
        raise KeyboardInterrupt from None
    # Without standalone mode an exit code comes back as the result (typer.Exit); hn's
    # commands return nothing else.
    if type(code) is int and code:
        if code == 130 and not STATE.interrupt_reported:
            raise KeyboardInterrupt
        sys.exit(code)


def main() -> None:
    import logging

    # Library log lines stay quiet in the CLI: results and errors are its output. The node
    # (`hn mcp serve`) installs real handlers.
    logging.getLogger("hn").addHandler(logging.NullHandler())
    try:
        argv = sys.argv[1:]
        only = command_of(argv)
        if only is None and "--version" in argv:
            only = ""  # the eager --version answers before any command is needed
        _invoke(build(only))
    except HnError as exc:
        from hn.cli.output import safe  # a message may quote what a peer or a file said

        print(f"error: {safe(exc.message)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        # HN_DEBUG=1 shows where any of these came from.
        if os.environ.get("HN_DEBUG"):
            traceback.print_exc()
        failure = storage_failure(exc)  # this machine's disk, met outside hn's own writers
        if failure is not None:
            print(f"error: this machine's storage failed: {failure.message}", file=sys.stderr)
            sys.exit(failure.exit_code)
        if isinstance(exc, OSError):  # a path the command was given, or this machine refusing it
            print(f"error: {os_reason(exc)}", file=sys.stderr)
            sys.exit(1)
        # A bug: say so in one line.
        print(f"error: internal error ({type(exc).__name__}: {exc}); rerun with HN_DEBUG=1 for details",
              file=sys.stderr)
        sys.exit(1)
