from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from hn.errors import MalformedDocument, TooLarge
from hn.proto.canonical import MAX_DEPTH, b64d, b64e, canonical, is_hex_digest, loads_canonical, loads_strict

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_round_trip(value: object) -> None:
    raw = canonical(value)
    assert raw == rfc8785.dumps(value)
    assert canonical(loads_strict(raw)) == raw
    assert loads_canonical(raw) == loads_strict(raw)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers(0, 9), min_size=2, max_size=5))
def test_non_canonical_encodings_rejected(value: dict[str, int]) -> None:
    spaced = json.dumps(value, indent=1).encode()
    with pytest.raises(MalformedDocument):
        loads_canonical(spaced)
    reordered = json.dumps(dict(sorted(value.items(), reverse=True)), separators=(",", ":"), ensure_ascii=False).encode()
    if reordered != canonical(value):
        with pytest.raises(MalformedDocument):
            loads_canonical(reordered)


@pytest.mark.parametrize("load", [loads_strict, loads_canonical])
@pytest.mark.parametrize("text", [b'{"a":1,"a":2}', b'{"x":{"k":1,"k":1}}', b'{"a":1,"a":1}'])
def test_duplicate_keys_rejected(text: bytes, load: Callable[[bytes], object]) -> None:
    with pytest.raises(MalformedDocument, match="duplicate key"):
        load(text)


@pytest.mark.parametrize("load", [loads_strict, loads_canonical])
@pytest.mark.parametrize("text", [b'{"a":NaN}', b'{"a":Infinity}', b"[-Infinity]"])
def test_nan_and_infinity_rejected(text: bytes, load: Callable[[bytes], object]) -> None:
    with pytest.raises(MalformedDocument, match="not allowed"):
        load(text)


@pytest.mark.parametrize("text", [b'{"a":1.0}', b'{"a":-0}', b'{"a":1e2}', b'{"b":1,"a":2}', b'{ "a":1}'])
def test_ambiguous_numbers_and_order_not_canonical(text: bytes) -> None:
    loads_strict(text)  # valid JSON
    with pytest.raises(MalformedDocument, match="canonical"):
        loads_canonical(text)


@pytest.mark.parametrize("load", [loads_strict, loads_canonical])
def test_deep_nesting_is_a_clean_error(load: Callable[[bytes], object]) -> None:
    with pytest.raises(MalformedDocument, match="nested"):
        load(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(MalformedDocument, match="nested"):
        load(b"[" * 70 + b"]" * 70)


@pytest.mark.parametrize("load", [loads_strict, loads_canonical])
def test_nesting_limit_is_exact(load: Callable[[bytes], object]) -> None:
    assert load(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) == json.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    deep = b'{"a":' * (MAX_DEPTH - 1) + b"[1]" + b"}" * (MAX_DEPTH - 1)
    assert load(deep) == json.loads(deep)
    with pytest.raises(MalformedDocument, match="nested"):
        load(b'{"a":' * MAX_DEPTH + b"[1]" + b"}" * MAX_DEPTH)


@pytest.mark.parametrize("value", [{1: "a"}, {"a": b"x"}, [{"k": {None: 1}}], {"a": {1.5}}])
def test_values_json_cannot_hold_are_refused(value: object) -> None:
    with pytest.raises(MalformedDocument):
        canonical(value)


@pytest.mark.parametrize("load", [loads_strict, loads_canonical])
def test_oversize_rejected(load: Callable[..., object]) -> None:
    with pytest.raises(TooLarge):
        load(b"[" + b"1," * 100 + b"1]", max_bytes=50)


def test_canonical_bytes_in_another_encoding_are_refused() -> None:
    # The plain parser would read UTF-16; canonical JSON is UTF-8 only.
    with pytest.raises(MalformedDocument):
        loads_canonical('{"a":"b"}'.encode("utf-16"))


def test_strict_base64() -> None:
    assert b64d(b64e(b"hello")) == b"hello"
    for bad in ("aGVsbG8", "aGVsbG8=\n", "aGVsbG9=", "aGVs*G8=", 5):
        with pytest.raises(MalformedDocument):
            b64d(bad)
    with pytest.raises(MalformedDocument, match="expected 4 bytes"):
        b64d(b64e(b"abc"), length=4)


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(0, 10_000))
def test_loads_canonical_accepts_only_the_canonical_bytes(value: object, where: int) -> None:
    """Every other encoding of the same value (spacing, escapes, key order, number forms) is refused."""
    raw = canonical(value)
    text = raw.decode("utf-8")
    cut = where % (len(text) + 1)
    others = [
        json.dumps(value, separators=(", ", ": "), ensure_ascii=False).encode(),
        json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=True).encode(),
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        (text[:cut] + " " + text[cut:]).encode(),
        (text + "\n").encode(),
    ]
    for other in others:
        if other == raw:
            continue
        try:
            parsed = loads_strict(other)
        except MalformedDocument:
            continue  # not even JSON (e.g. a space inside a number): refused anyway
        if parsed != value:
            continue  # the space landed inside a string: another value, with its own canonical form
        with pytest.raises(MalformedDocument):
            loads_canonical(other)


def test_hex_digest_check_takes_exactly_the_lowercase_hex_of_its_length() -> None:
    good = "0123456789abcdef" * 4
    assert is_hex_digest(good) and is_hex_digest(good[:32], 32)
    for bad in (good.upper(), good[:63], good + "0", good[:63] + "\n", good[:63] + "g", "", None, 7, good.encode()):
        assert not is_hex_digest(bad)
    assert not is_hex_digest(good, 32) and not is_hex_digest(good[:32])


@pytest.mark.parametrize("text", [
    '{"seq":1' + "0" * 5000 + "}",
    "[" + "9" * 4301 + "]",
    '{"a":-' + "1" * 10000 + "}",
])
def test_an_integer_too_long_to_convert_is_malformed_not_a_value_error(text: str) -> None:
    """Python refuses to convert integers of more than 4,300 digits with a plain ValueError;
    every strict loader turns that into MalformedDocument (a 400, one clear CLI line)."""
    for data in (text, text.encode()):
        with pytest.raises(MalformedDocument, match="digits"):
            loads_strict(data)
    with pytest.raises(MalformedDocument, match="digits"):
        loads_canonical(text.encode())


def test_an_integer_just_inside_the_conversion_limit_is_parsed_then_refused_as_unsafe() -> None:
    text = '{"a":' + "1" * 4300 + "}"
    assert loads_strict(text) == {"a": int("1" * 4300)}
    with pytest.raises(MalformedDocument, match="canonical"):  # outside JSON's safe range: no JCS form
        loads_canonical(text.encode())
