"""Timestamps on the wire: RFC 3339 UTC with whole seconds, e.g. 2026-01-02T03:04:05Z."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from hn.errors import MalformedDocument

_FMT = "%Y-%m-%dT%H:%M:%SZ"
_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)


def now() -> float:
    """The clock every hn module reads; tests replace it to move time."""
    return time.time()


def fmt(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), tz=dt.UTC).strftime(_FMT)


def parse(value: Any, what: str = "timestamp") -> float:
    if not isinstance(value, str):
        raise MalformedDocument(f"{what}: expected an RFC 3339 string")
    # The exact form fmt writes, every field zero-padded, naming a real date and time: the
    # round trip refuses what a lenient parser would map onto another spelling (24:00:00).
    try:
        if not _FORM.fullmatch(value):
            raise ValueError(value)
        parsed = dt.datetime.fromisoformat(value[:-1])
        if parsed.isoformat() + "Z" != value:
            raise ValueError(value)
    except ValueError as exc:
        raise MalformedDocument(f"{what}: not of the form YYYY-MM-DDTHH:MM:SSZ") from exc
    return parsed.replace(tzinfo=dt.UTC).timestamp()


def now_iso() -> str:
    return fmt(now())
