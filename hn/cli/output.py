"""Rendering: one JSON document on stdout with --json, Rich text otherwise.

Nothing a reader may copy (a mnemonic, a command, an id, a digest) is wrapped or cut:
Rich prints every line whole (soft wrap), leaving a terminal to fold what is wider than
it, and ``kv`` and ``table`` keep every cell whole. Into a file or a pipe no line is ever
folded. ``out_file`` checks a file a command is told to write before it starts.

What peers and files say (an alias, a DID field, an error text, a document name) reaches
the terminal only through ``safe`` (control characters shown as escapes) and never as
Rich markup: ``table`` and ``kv`` cells, ``plain`` and ``say`` do both. --json output is
left exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console


# The width given to Rich for output that is not a terminal (Rich would take $COLUMNS or
# 80 columns): wide enough that nothing there is laid out to fit a screen.
UNWRAPPED_WIDTH = 1 << 15


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _LazyConsole:
    """A Rich console made on first use: importing Rich costs about 20 ms of start-up,
    which a command that prints JSON, or nothing, never needs."""

    def __init__(self, **options: Any) -> None:
        # Soft wrap: lines are never folded at word boundaries nor cropped by Rich.
        self._options = {"soft_wrap": True, **options}
        self._console: Console | None = None

    def instance(self) -> Console:
        if self._console is None:
            from rich.console import Console

            made = Console(**self._options)
            if not _is_tty(made.file):
                made.width = UNWRAPPED_WIDTH
            self._console = made
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.instance(), name)


def real(lazy: Console) -> Console:
    """The Console itself, for Rich objects that keep a reference to it."""
    return cast(_LazyConsole, lazy).instance() if isinstance(lazy, _LazyConsole) else lazy


console = cast("Console", _LazyConsole(highlight=False))
err_console = cast("Console", _LazyConsole(stderr=True, highlight=False))


# Characters a terminal acts on instead of showing: C0 controls (ESC, which starts CSI and
# OSC sequences, newline and tab included: a peer's text must not start a line of its own),
# DEL, C1 controls (U+009B is a one-byte CSI), the Unicode line and paragraph separators,
# and the bidirectional overrides and isolates that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: Any) -> str:
    """``text`` with every character a terminal would act on shown as an escape (ESC as
    ``\\x1b``, a newline as ``\\x0a``), so an escape sequence in a peer's alias or error
    prints as visible text and does nothing. Not markup-escaped: print it as a Text."""
    return _UNSAFE.sub(_visible, str(text))


def say(template: str, *values: Any, style: str | None = None) -> None:
    """One line of ``template`` (``{}`` placeholders, our own text) with ``values`` (what
    peers and files say) made ``safe``; no markup is read anywhere in it (``plain``)."""
    plain(template.format(*values), style)


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
    elif human is not None:
        human(data)
    else:
        console.print_json(json.dumps(data, default=str))


def plain(text: str, style: str | None = None) -> None:
    """One line a reader may copy (a mnemonic, a command, an id), printed as it is: whole,
    and without Rich markup."""
    from rich.text import Text

    console.print(Text(safe(text), style=style or ""), soft_wrap=True)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """A table as wide as its content: no cell is folded or cut to fit the terminal."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for column in columns:
        t.add_column(column, no_wrap=True)
    for row in rows:
        t.add_row(*[_cell(c) for c in row])
    _print_whole(t)


def _cell(value: Any) -> Any:
    """A cell as plain, safe text: cells carry what peers and files say (a peer's error, a
    document name), which Rich must not read as markup ("[/x]" would stop the command) and
    the terminal must not receive raw (ESC, CSI, OSC: see ``safe``)."""
    from rich.text import Text

    if isinstance(value, Text):
        shown = value.copy()
        shown.plain = safe(value.plain)  # same length unless unsafe: then the style is dropped
        return shown
    return Text(safe(value))


def kv(data: dict[str, Any], title: str | None = None) -> None:
    """Key/value lines, keys aligned in bold; each value printed whole."""
    from rich.table import Table

    t = Table(title=title, show_header=False, box=None)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(no_wrap=True)
    for key, value in data.items():
        t.add_row(_cell(key), _cell(value))
    _print_whole(t)


def _print_whole(t: Any) -> None:
    """Print a Rich table at its natural width even where that is wider than the console:
    the terminal then folds the long lines, but every cell keeps its whole text."""
    from rich.measure import Measurement

    target = real(console)
    natural = Measurement.get(target, target.options.update_width(UNWRAPPED_WIDTH), t).maximum
    if natural > target.width:
        t.width = natural
    target.print(t, soft_wrap=True)


def out_file(value: str, *, force: bool | None = None, option: str = "--out") -> Path:
    """The file a command is told to write with ``option``, checked before any work: not
    empty, not a folder, and, where ``force`` is given (a command with --force), not an
    existing file unless it is True. Nothing is written or removed here."""
    from hn.errors import InputError, UsageError

    if not value.strip():
        raise UsageError(f"{option} is empty: give the path of a file to write")
    path = Path(value).expanduser()
    if path.is_dir():
        raise UsageError(f"{option} {value} is a folder: give a file path, such as {path / 'NAME'}")
    if force is False and os.path.lexists(path):
        raise InputError(f"{path} already exists: pass --force to replace it, or choose another {option}")
    return path


def failed_line(what: str, verb: str, key: str, results: list[dict[str, Any]]) -> str:
    """The `error:` line of a command whose report (on stdout) has failed rows: how many,
    and the first one with its reason."""
    failed = [r for r in results if not r["ok"]]
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{len(failed)} of {len(results)} {what}(s) {verb}: {first[key]}: {first['error']}{more}"
