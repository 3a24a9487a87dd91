"""Per-invocation state shared by the command modules (the vault home)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hn.errors import NoIdentity
from hn.vault.home import Home, default_home


@dataclass
class State:
    home_dir: Path | None = None
    log_json: bool = False

    @property
    def home(self) -> Home:
        return Home(self.home_dir or default_home())

    def existing_home(self) -> Home:
        """The home, refused with a clear message when no vault was ever created there."""
        home = self.home
        if not home.exists:
            raise NoIdentity(f"no vault at {home.root}: run `hn id create ALIAS` first")
        return home


STATE = State()
