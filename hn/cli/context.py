"""Per-invocation state shared by the command modules (the vault home), and the warnings
the vault has for the user."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from hn.errors import NoIdentity
from hn.vault.home import Home, default_home


def warn(text: str) -> None:
    """One `warning: ...` line on stderr: something the user should know, not a failure."""
    print(f"warning: {text}", file=sys.stderr, flush=True)


class _UserWarnings(logging.Handler):
    """Shows the user the warnings the vault logs with a ``say`` text (a damaged cache
    rebuilt, say); every other record stays quiet, as library logs do in the CLI. `hn mcp
    serve` replaces the handlers of the "hn" logger with its own log set-up."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        extra = getattr(record, "hn", None)
        if isinstance(extra, dict) and isinstance(extra.get("say"), str):
            warn(extra["say"])


_WARNINGS = _UserWarnings()

# Commands that may start a vault in a folder that holds none yet. Every other command
# refuses a missing vault with one message (`no_vault`), instead of listing an empty one
# (a mistyped --home would show no identities and default policies) or failing on the
# first thing it misses in it.
STARTS_A_VAULT = frozenset({
    ("id", "create"), ("id", "import"), ("id", "recovery", "restore"), ("policy", "set"),
})


def no_vault(home: Home) -> NoIdentity:
    return NoIdentity(f"no vault at {home.root}: run `hn id create ALIAS` first, "
                      "or give --home (or $HN_HOME) the folder of an existing vault")


def _command() -> tuple[str, ...]:
    """The command being run (``("id", "list")``); empty outside a command line."""
    import importlib

    ctx = None
    # Recent Typer releases carry their own copy of Click; older ones depend on Click.
    for name in ("typer._click.globals", "click"):
        try:
            ctx = importlib.import_module(name).get_current_context(silent=True)
        except ImportError:
            continue
        break
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return tuple(reversed(names))


def _finish_restore(home: Home) -> None:
    """A restore of this vault that stopped part-way is finished (or rolled back) before
    any command uses it, so nothing writes into a tree that is about to move."""
    from hn.backup import swap

    done = swap.recover(home.root)
    if done is not None:
        warn(f"{home.root}: {done}")


@dataclass
class State:
    home_dir: Path | None = None
    log_json: bool = False
    # A command that stops on Ctrl-C after saying so itself (exit 130) sets this, so the
    # entry point does not add its own "interrupted".
    interrupt_reported: bool = False

    @property
    def home(self) -> Home:
        """The vault of this command; refused (`no_vault`) when there is none, unless the
        command is one that starts a vault."""
        logger = logging.getLogger("hn")
        if _WARNINGS not in logger.handlers:
            logger.addHandler(_WARNINGS)
        home = Home(self.home_dir or default_home())
        _finish_restore(home)
        if not home.exists:
            command = _command()
            if command and command not in STARTS_A_VAULT:
                raise no_vault(home)
        return home

    def existing_home(self) -> Home:
        """The home, refused with a clear message when no vault was ever created there."""
        home = self.home
        if not home.exists:
            raise no_vault(home)
        return home


STATE = State()
