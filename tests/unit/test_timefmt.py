"""Wire timestamps: exactly the form hn writes (RFC 3339, UTC, whole seconds, zero-padded)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hn.errors import MalformedDocument
from hn.proto import timefmt


@given(st.integers(min_value=0, max_value=253402300799))  # up to 9999-12-31T23:59:59Z
def test_what_fmt_writes_parses_back_to_the_same_second(ts: int) -> None:
    assert timefmt.parse(timefmt.fmt(ts)) == ts


@pytest.mark.parametrize("value", [
    "2026-1-02T03:04:05Z",        # not zero-padded
    "2026-01-02T03:04:05",        # no zone
    "2026-01-02T03:04:05+00:00",  # another spelling of UTC
    "2026-01-02 03:04:05Z",
    "2026-01-02T03:04:05.5Z",     # fractions of a second
    "2026-02-30T03:04:05Z",       # no such day
    "2026-01-02T24:00:00Z",
    "\uff12026-01-02T03:04:05Z",  # a full-width digit
    "2026-01-02T03:04:05Z\n",
    "",
])
def test_other_forms_are_refused(value: str) -> None:
    with pytest.raises(MalformedDocument, match="created_at: not of the form YYYY-MM-DDTHH:MM:SSZ"):
        timefmt.parse(value, "created_at")


def test_a_non_string_is_refused() -> None:
    with pytest.raises(MalformedDocument, match="expected an RFC 3339 string"):
        timefmt.parse(1767323045)
