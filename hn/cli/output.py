"""Rendering: one JSON document on stdout with --json, Rich text otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
    elif human is not None:
        human(data)
    else:
        console.print_json(json.dumps(data, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, show_lines=False)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*[str(c) for c in row])
    console.print(t)


def kv(data: dict[str, Any], title: str | None = None) -> None:
    t = Table(title=title, show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for key, value in data.items():
        t.add_row(str(key), str(value))
    console.print(t)
