"""Rendering: one JSON document on stdout with --json, Rich text otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A Rich console made on first use: importing Rich costs about 20 ms of start-up,
    which a command that prints JSON, or nothing, never needs."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def instance(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.instance(), name)


def real(lazy: Console) -> Console:
    """The Console itself, for Rich objects that keep a reference to it."""
    return cast(_LazyConsole, lazy).instance() if isinstance(lazy, _LazyConsole) else lazy


console = cast("Console", _LazyConsole(highlight=False))
err_console = cast("Console", _LazyConsole(stderr=True, highlight=False))


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
    elif human is not None:
        human(data)
    else:
        console.print_json(json.dumps(data, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*[str(c) for c in row])
    console.print(t)


def kv(data: dict[str, Any], title: str | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for key, value in data.items():
        t.add_row(str(key), str(value))
    console.print(t)
