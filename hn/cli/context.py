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


@dataclass
class State:
    home_dir: Path | None = None
    log_json: bool = False

    @property
    def home(self) -> Home:
        logger = logging.getLogger("hn")
        if _WARNINGS not in logger.handlers:
            logger.addHandler(_WARNINGS)
        return Home(self.home_dir or default_home())

    def existing_home(self) -> Home:
        """The home, refused with a clear message when no vault was ever created there."""
        home = self.home
        if not home.exists:
            raise NoIdentity(f"no vault at {home.root}: run `hn id create ALIAS` first")
        return home


STATE = State()
