"""Every `hn ...` command line in README.md and docs/*.md names commands and options that exist.

docs/cli.md is generated from the CLI (tests/e2e/test_cli_reference.py); the other pages are
written by hand, so this test reads their command lines, in fenced blocks and in inline code,
and checks each against the real command tree, without running anything:

- the command path exists (`hn vault backup create`);
- every option exists on that command, or on `hn` itself when it comes before the
  subcommand (`hn --home DIR id list`), as Click parses them;
- an option that takes a value is given one, and an int or float value that is not a
  placeholder is a number;
- the number of arguments fits the command's, and required options are there.

Placeholders (DID, FILE, `<id>`, `did:hn:…`, `$HN_HOME`) are ordinary words here, `...` after
an argument says it repeats, `[--all]` is an optional option. A line may set variables before
`hn`, continue with a trailing backslash, end in a comment, or pipe into other programs: only
the `hn` part is checked; `ExecStart=…/bin/hn …` counts as `hn`, and so does the `hn` service
of `docker compose … run`, whose image has hn as its entrypoint. A synopsis such as
`hn id create ALIAS | list | use ALIAS` is read as the three commands it lists: a part after
`|` that starts with a sibling subcommand is one of them, anything else is a real pipe.

Inline code in prose may only name a command or an option (`hn id import`,
`hn mcp relay register --days`): a span without any argument or option value is checked for
its names only. Everything else, and every line of a fenced block, is a full command line.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from hn.cli.app import build

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {ROOT / "docs" / "cli.md"}  # checked against the CLI by test_cli_reference.py
OPERATORS = frozenset("();<>|&")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
ANGLE_PLACEHOLDER = re.compile(r"<[A-Za-z][\w .:|/-]*>")  # <id>, <did tail>, <doc|shard>
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
ELLIPSIS = ("...", "…")


@dataclass(frozen=True)
class Line:
    """One command line of a page: fenced (a block's line) or inline (a code span in prose)."""

    path: Path
    lineno: int
    text: str
    fenced: bool

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.lineno}"


def pages() -> list[Path]:
    return [ROOT / "README.md"] + [p for p in sorted((ROOT / "docs").glob("*.md")) if p not in GENERATED]


def lines_of(path: Path) -> list[Line]:
    """Fenced lines (a trailing backslash joins the next) and inline code spans of one page."""
    out: list[Line] = []
    prose: list[str] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        marker = FENCE.match(raw)
        if fence is None and marker:
            fence = marker.group(1)
            prose.append("")
            continue
        if fence is not None:
            prose.append("")
            if marker and marker.group(1) == fence:
                fence = None
                continue
            start, text = pending if pending else (number, "")
            text += raw
            if text.endswith("\\"):
                pending = (start, text[:-1] + " ")
                continue
            pending = None
            out.append(Line(path, start, text, fenced=True))
            continue
        prose.append(raw)
    text = "\n".join(prose)
    for match in INLINE_CODE.finditer(text):
        if "\n\n" in match.group(2):  # a stray backtick: code spans stay within a paragraph
            continue
        lineno = text.count("\n", 0, match.start()) + 1
        out.append(Line(path, lineno, " ".join(match.group(2).split()), fenced=False))
    return sorted(out, key=lambda line: line.lineno)


def tokens(text: str) -> list[str]:
    """Shell words and operators; placeholders in angle brackets become one word."""
    text = text.replace("\\|", "|")  # a pipe escaped in a Markdown table
    text = ANGLE_PLACEHOLDER.sub(lambda m: "ARG" + re.sub(r"\W", "_", m.group(0)[1:-1]), text)
    text = re.sub(r"(?<=\s)\d+(?=[<>])", "", text)  # the fd of a redirection: 2>&1
    if text.lstrip().startswith("$ "):  # a shell prompt
        text = text.lstrip()[2:]
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def is_operator(token: str) -> bool:
    return bool(token) and set(token) <= OPERATORS


def is_hn(word: str) -> bool:
    return word == "hn" or word.endswith("/bin/hn")


def substitutions(text: str) -> tuple[str, list[str]]:
    """The line with each `$(...)` made one placeholder word, and the commands inside them."""
    inner: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            inner.append(text[i + 2:j - 1] if depth == 0 else text[i + 2:])
            out.append("ARG_SUBSTITUTION")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out), inner


def invocations(text: str) -> list[tuple[list[str], bool]]:
    """The argument lists given to `hn` on one line, each with whether it followed a `|`."""
    text, inner = substitutions(text)
    try:
        words = tokens(text)
    except ValueError:  # an unbalanced quote: only a problem on a line that runs hn
        if re.search(r"(^|[\s=|&;(])hn(\s|$)", text):
            return [(["<unparseable line>"], False)]
        return []
    segments: list[tuple[list[str], bool]] = []
    current: list[str] = []
    after_pipe = False
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if is_operator(word):
            if "<" in word or ">" in word:  # a redirection and its file
                skip_next = True
                continue
            segments.append((current, after_pipe))
            current, after_pipe = [], word == "|"
            continue
        current.append(word)
    segments.append((current, after_pipe))
    found: list[tuple[list[str], bool]] = []
    for words_, piped in segments:
        while words_ and words_[0] == "$":
            words_ = words_[1:]
        if words_[:1] == ["docker"] and "run" in words_ and "hn" in words_[words_.index("run"):]:
            # `docker compose … run --rm hn ARGS`: the hn service's image has hn as its entrypoint
            start = words_.index("run")
            found.append((words_[words_.index("hn", start) + 1:], False))
            continue
        for i, word in enumerate(words_):
            if is_hn(word) or (ASSIGNMENT.match(word) and is_hn(word.split("=", 1)[1])):
                found.append((words_[i + 1:], False))
                break
            if not ASSIGNMENT.match(word):  # not a command that runs hn
                if piped and words_:
                    found.append((words_, True))  # maybe a synopsis alternative
                break
    for command in inner:
        found.extend(invocations(command))
    return found


@functools.lru_cache(maxsize=1)
def command_tree() -> Any:
    return typer.main.get_command(build())


def options_of(command: Any) -> dict[str, Any]:
    return {name: p for p in command.params if p.param_type_name == "option"
            for name in (*p.opts, *p.secondary_opts)}


def is_placeholder(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", value)) or value.startswith(("ARG", "$")) \
        or any(e in value for e in ELLIPSIS)


def bad_number(param: Any, value: str) -> bool:
    """A literal value that an int or float option (or its range) would refuse."""
    kind = getattr(param.type, "name", "").split(" ")[0]  # Click says "integer", Typer's copy "int"
    if is_placeholder(value) or kind not in ("int", "integer", "float"):
        return False
    try:
        param.type.convert(value, param, None)
    except Exception:  # Click's BadParameter, from whichever Click Typer carries
        return True
    return False


@dataclass
class Parsed:
    path: list[str]
    command: Any
    problems: list[str]
    mention: bool  # names the command or its options only: no argument, no option value


def parse(argv: list[str], fenced: bool) -> Parsed:
    """Read argv as Click would for `hn`, collecting every way it would not fit."""
    root = command_tree()
    command, path = root, ["hn"]
    problems: list[str] = []
    args: list[str] = []
    given: set[str] = set()
    values = 0
    missing_value: list[str] = []
    words = [w.strip("[]") for w in argv if w.strip("[]")]  # [--all]: an optional option
    i = 0
    only_args = False
    while i < len(words):
        word = words[i]
        i += 1
        is_group = hasattr(command, "commands")
        if word.startswith("-") and word != "-" and not only_args:
            if word == "--":
                only_args = True
                continue
            if word == "--help":
                return Parsed(path, command, problems, mention=True)
            name, _, attached = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
            known = options_of(command)
            param = known.get(name)
            if param is None:
                where = " ".join(path)
                if command is not root and name in options_of(root):
                    problems.append(f"{name} is an option of hn itself: it goes before the subcommand ({where})")
                else:
                    problems.append(f"{where} has no option {name}")
                continue
            given.add(param.name)
            if param.is_flag or param.count:
                if attached:
                    problems.append(f"{name} is a flag and takes no value")
                if param.is_eager:  # --version: answered before any command runs
                    return Parsed(path, command, problems, mention=True)
                continue
            if attached:
                value: str | None = attached
            elif i < len(words) and not (words[i] in known or words[i] == "--help"):
                value = words[i]
                i += 1
            else:
                value = None
            if value is None:
                missing_value.append(name)
                continue
            values += 1
            if bad_number(param, value):
                problems.append(f"{name} takes a number, not {value!r}")
            if i < len(words) and words[i] in ELLIPSIS:
                i += 1
                if not param.multiple:
                    problems.append(f"{name} is given once, not repeated (...)")
            continue
        if is_group and not only_args:
            sub = command.commands.get(word)
            if sub is None:
                problems.append(f"{' '.join(path)} has no command {word!r}")
                return Parsed(path, command, problems, mention=False)
            command, path = sub, [*path, word]
            continue
        if word in ELLIPSIS:
            if args and not any(p.nargs == -1 for p in command.params if p.param_type_name == "argument"):
                problems.append(f"{' '.join(path)} takes no repeated argument (...)")
            continue
        args.append(word)
    mention = not fenced and not args and not values
    if hasattr(command, "commands"):
        if not mention:
            problems.append(f"{' '.join(path)} is a group: name one of its commands "
                            f"({', '.join(sorted(command.commands))})")
        return Parsed(path, command, problems, mention)
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    most = None if any(p.nargs == -1 for p in arguments) else sum(p.nargs for p in arguments)
    least = sum(max(p.nargs, 1) for p in arguments if p.required)
    where = " ".join(path)
    if most is not None and len(args) > most:
        problems.append(f"{where} takes at most {most} argument(s), given {len(args)}: {' '.join(args)}")
    if not mention:
        if len(args) < least:
            names = " ".join((p.name or "").upper() for p in arguments if p.required)
            problems.append(f"{where} needs {least} argument(s) ({names}), given {len(args)}")
        for name in missing_value:
            problems.append(f"{name} needs a value")
        for param in command.params:
            if param.param_type_name == "option" and param.required and param.name not in given:
                problems.append(f"{where} needs {param.opts[0]}")
    return Parsed(path, command, problems, mention)


def check(line: Line) -> list[str]:
    """The problems of one documentation line, each as `file:line: problem  |  the line`."""
    problems: list[str] = []
    previous: Parsed | None = None
    for argv, piped in invocations(line.text):
        if argv == ["<unparseable line>"]:
            problems.append("the line does not parse as a shell command (unbalanced quote?)")
            continue
        if piped:  # `hn id create ALIAS | list | use ALIAS`: an alternative, or a real pipe
            parent = previous.path[1:-1] if previous and len(previous.path) > 1 else None
            group = command_tree()
            for name in parent or []:
                group = group.commands[name]
            if parent is None or argv[0] not in getattr(group, "commands", {}):
                previous = None
                continue
            argv = [*parent, *argv]
        previous = parse(argv, line.fenced)
        problems.extend(previous.problems)
    return [f"{line.where()}: {p}  |  {line.text.strip()}" for p in problems]


def all_lines() -> list[Line]:
    return [line for page in pages() for line in lines_of(page)]


def test_documented_command_lines_exist() -> None:
    problems = [p for line in all_lines() for p in check(line)]
    assert not problems, "documented hn command lines that do not fit the CLI:\n" + "\n".join(problems)


def all_option_names(command: Any) -> set[str]:
    names = set(options_of(command))
    for sub in getattr(command, "commands", {}).values():
        names |= all_option_names(sub)
    return names


# Options of other programs that the docs quote on their own, in inline code.
FOREIGN_OPTIONS = {"--deploy-hook"}  # certbot's, in deploy.md's TLS section


def test_options_named_in_prose_exist() -> None:
    """Inline code that is an option alone (`--owner DID`, `--scope full`) names an option of some hn command."""
    known = all_option_names(command_tree()) | {"--help"}
    problems = [f"{line.where()}: no hn command has {name}  |  {line.text}" for line in all_lines()
                if not line.fenced and line.text.startswith("--")
                for name in [line.text.split()[0].split("=")[0]] if name not in known | FOREIGN_OPTIONS]
    assert not problems, "options in the docs that no hn command has:\n" + "\n".join(problems)


def test_the_docs_command_lines_are_found() -> None:
    """A reader that found no command lines would pass anything."""
    checked = [line for line in all_lines() if any(not piped for _, piped in invocations(line.text))]
    assert len(checked) >= 100, f"only {len(checked)} hn command lines found in the docs"
    assert {line.path.name for line in checked} >= {"README.md", "quickstart.md", "backups.md", "trust.md"}
    assert sum(line.fenced for line in checked) >= 50 and sum(not line.fenced for line in checked) >= 30
    texts = [line.text for line in checked]
    assert any(t.startswith("ExecStart=") for t in texts)  # the systemd timer in backups.md
    assert any(t.startswith("docker compose") for t in texts)  # deploy.md
    assert 'ENTRYPOINT ["hn"]' in (ROOT / "profiles" / "docker" / "Dockerfile").read_text()


@pytest.mark.parametrize("text", [
    "hn id create alice                 # a comment: --no-such-option",
    "HN_HOME=/tmp/v hn id list --json",
    "hn --home /tmp/v vault backup list --from https://node:8733",
    "hn vault backup create --scope delta \\",
    "ExecStart=%h/hn/.venv/bin/hn vault backup prune --keep 7 --json",
    "hn id create ALIAS | list | use ALIAS",
    "hn doc list --json | jq -r '.[].id' && hn vault verify",
    "hn doc add FILE ... --publish",
    "hn trust link list [--all] --json",
    "hn vault backup verify --path ~/.human-net/backups/<id>.backup.json --owner did:hn:…",
    "hn id recovery restore --alias alice < shares.txt 2>&1",
    "hn doc share $(hn doc list --json | jq -r '.[0].id') --to did:hn:...",
    "hn id recovery split -k 3 -n 5",
    "docker compose -f profiles/docker/compose.yaml run --rm hn id create nas",
    "hn --version",
])
def test_good_lines_pass(text: str) -> None:
    line = Line(ROOT / "README.md", 1, text.rstrip("\\"), fenced=True)
    assert check(line) == []


@pytest.mark.parametrize(("text", "fenced", "expected"), [
    ("hn doc add notes.md --publsh", True, "hn doc add has no option --publsh"),
    ("hn vault backup craete", True, "hn vault backup has no command 'craete'"),
    ("hn id create", True, "hn id create needs 1 argument(s) (ALIAS), given 0"),
    ("hn id create alice bob", True, "hn id create takes at most 1 argument(s), given 2"),
    ("hn doc open SHARD_ID", True, "hn doc open needs --out"),
    ("hn doc share 3f2a9c --to", True, "--to needs a value"),
    ("hn vault backup prune --keep seven", True, "--keep takes a number"),
    ("hn id list --home /tmp/v", True, "--home is an option of hn itself"),
    ("hn vault verify --json=yes", True, "--json is a flag"),
    ("hn id show ALIAS ...", True, "takes no repeated argument"),
    ("hn id", True, "hn id is a group"),
    ("X=1 hn id lst", True, "hn id has no command 'lst'"),
    ("docker compose run --rm hn id craete nas", True, "hn id has no command 'craete'"),
    ("hn id create ALIAS | list | usse ALIAS", True, None),  # `usse` is a pipe into a program of that name
    ("hn mcp relay register --dayz", False, "has no option --dayz"),
    ("hn mcp federate add did:hn:x", False, "needs 2 argument(s)"),
])
def test_bad_lines_are_reported(text: str, fenced: bool, expected: str | None) -> None:
    problems = check(Line(ROOT / "docs" / "x.md", 7, text, fenced=fenced))
    if expected is None:
        assert problems == []
        return
    assert problems and all(p.startswith("docs/x.md:7: ") for p in problems), problems
    assert any(expected in p for p in problems), problems


def test_mentions_in_prose_name_commands_only() -> None:
    for text in ("hn id import", "hn mcp relay register --days", "hn vault backup verify --json", "hn id"):
        assert check(Line(ROOT / "docs" / "x.md", 1, text, fenced=False)) == [], text
