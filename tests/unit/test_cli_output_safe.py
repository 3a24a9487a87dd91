"""What peers say reaches the terminal safe: control characters (C0, DEL, C1, so ESC and
every CSI/OSC sequence) and bidi overrides shown as escapes, Rich markup never read."""

from __future__ import annotations

import pytest
from rich.text import Text

from hn.cli import output

HOSTILE = "[/]\x1b[2J\x1b[31mRED\nline2\x1b]0;pwned\x07\x9b31m\x7f\u202etxt.exe\u2028[bold]x"
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\u2028")


def test_safe_shows_every_control_character_as_an_escape() -> None:
    shown = output.safe(HOSTILE)
    assert not any(c in shown for c in RAW) and "\n" not in shown
    assert shown == ("[/]\\x1b[2J\\x1b[31mRED\\x0aline2\\x1b]0;pwned\\x07\\x9b31m\\x7f\\u202etxt.exe\\u2028"
                     "[bold]x")
    for c in [chr(i) for i in range(0x20)] + ["\x7f"] + [chr(i) for i in range(0x80, 0xA0)]:
        assert output.safe(c) == f"\\x{ord(c):02x}"
    assert output.safe("café ☕ did:hn:abc [x] \\ ok") == "café ☕ did:hn:abc [x] \\ ok"  # printable: as it is
    assert output.safe(42) == "42"


def _printed(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert not any(c in out + err for c in RAW), repr(out)
    return out


def test_tables_kv_plain_and_say_print_peer_text_safely(capsys: pytest.CaptureFixture[str]) -> None:
    output.table(None, ["did", "error"], [["did:hn:x", HOSTILE], [Text("styled", style="bold"), Text(HOSTILE)]])
    out = _printed(capsys)
    assert out.count("[/]\\x1b[2J\\x1b[31mRED\\x0aline2") == 2 and "[bold]x" in out and "styled" in out
    output.kv({"alias": HOSTILE, HOSTILE: "key"})
    assert _printed(capsys).count("\\x1b]0;pwned\\x07") == 2
    output.plain(HOSTILE)
    assert "[/]\\x1b[2J" in _printed(capsys)
    output.say("federating with {} {} at {}", HOSTILE, "did:hn:x", "http://127.0.0.1:1")
    out = _printed(capsys)
    assert out.startswith("federating with [/]\\x1b[2J") and out.rstrip("\n").endswith("at http://127.0.0.1:1")
    assert out.count("\n") == 1  # the peer's newline did not start a line of its own


def test_json_output_stays_exact(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    output.emit({"alias": HOSTILE}, True, lambda d: output.say("{}", d["alias"]))
    assert json.loads(capsys.readouterr().out) == {"alias": HOSTILE}
