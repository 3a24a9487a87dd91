"""Canonical JSON (RFC 8785, JCS), strict parsing, strict base64 and BLAKE3 helpers."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from typing import Any

import blake3
import rfc8785

from hn.errors import MalformedDocument, TooLarge

MAX_DEPTH = 64
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


MAX_SAFE_INT = 2**53 - 1  # JSON's (I-JSON's) safe integer range


def _walk(obj: Any, max_depth: int) -> bool:
    """One pass over a parsed value: refuse nesting deeper than ``max_depth``, and say
    whether the value is plain: no floats, no unsafe integers, only ASCII keys.

    For plain values JCS equals ``json.dumps(sort_keys=True, compact, ensure_ascii=False)``:
    key order by UTF-16 code units only differs from code point order outside ASCII, and
    number formatting only differs for floats. The stdlib encoder is ~4x faster.
    """
    plain = True
    stack: list[tuple[Any, int]] = [([obj], 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise MalformedDocument(f"JSON nested deeper than {max_depth} levels")
        values: Any = item
        if type(item) is dict:
            values = item.values()
            if plain:
                try:  # join refuses a key that is not a string
                    plain = "".join(item).isascii()
                except TypeError:
                    plain = False
        for value in values:
            kind = type(value)
            if kind is dict or kind is list:
                stack.append((value, depth + 1))
            elif not plain or kind is str or kind is bool or value is None:
                continue
            elif kind is int:
                plain = -MAX_SAFE_INT <= value <= MAX_SAFE_INT
            else:
                plain = False
    return plain


def _plain(obj: Any) -> bool:
    return _walk(obj, 1 << 30)


def canonical_plain(obj: Any) -> bytes:
    """JCS bytes of a value ``_plain`` accepts (or one known to be such): the stdlib encoding."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedDocument(f"cannot canonicalise document: {exc}") from exc


def _jcs(obj: Any) -> bytes:
    """JCS bytes by the reference encoder, for values that are not plain."""
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedDocument(f"cannot canonicalise document: {exc}") from exc


def canonical(obj: Any) -> bytes:
    """JCS bytes of ``obj``. Raises MalformedDocument for values JCS cannot encode."""
    return canonical_plain(obj) if _plain(obj) else _jcs(obj)


class Splicer:
    """JCS of documents that share one large value, which is encoded only once.

    ``Splicer(key, value)(doc)`` equals ``canonical(doc)`` for a ``doc`` whose ``key`` holds
    ``value``: the document is encoded with a placeholder string there, which is then
    replaced by the value's bytes. The placeholder is the value's own BLAKE3 (64 hex
    digits), and it must occur exactly once, so no other field can be mistaken for it.
    ``plain``: the caller has checked that ``value`` is plain (see ``_walk``), so it is
    not walked again.
    """

    def __init__(self, key: str, value: Any, *, plain: bool = False) -> None:
        self.key = key
        self.raw = canonical_plain(value) if plain else canonical(value)
        self.token = hexdigest(self.raw)
        self.needle = b'"' + self.token.encode() + b'"'

    def __call__(self, doc: Any) -> bytes:
        out = canonical({**doc, self.key: self.token})
        if out.count(self.needle) != 1:
            raise MalformedDocument("cannot canonicalise document: placeholder collision")
        return out.replace(self.needle, self.raw)


def digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def hexdigest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def doc_digest(obj: Any) -> str:
    """BLAKE3 hex of a document's canonical bytes."""
    return hexdigest(canonical(obj))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedDocument(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise MalformedDocument(f"{name} is not allowed in JSON")


def _refusal(exc: ValueError) -> MalformedDocument:
    """The MalformedDocument for a ValueError of ``json.loads``: not JSON, not UTF-8, or an
    integer with more digits than Python converts (the only other ValueError it raises)."""
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return MalformedDocument(f"not valid JSON: {exc}")
    return MalformedDocument(f"JSON number with more than {sys.get_int_max_str_digits()} digits")


def loads_strict(
    data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """Parse JSON, refusing duplicate keys, NaN/Infinity, deep nesting, integers too long
    to convert and oversize input: each is a MalformedDocument (TooLarge for the size)."""
    if len(data) > max_bytes:
        raise TooLarge(f"JSON document of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except MalformedDocument:
        raise
    except RecursionError as exc:
        raise MalformedDocument(f"JSON nested deeper than {max_depth} levels") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise _refusal(exc) from exc
    _walk(obj, max_depth)
    return obj


def loads_canonical(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse JSON that must already be in canonical (JCS) form, byte for byte.

    Signed documents travel as their canonical bytes; re-encoding and comparing closes
    the door on `1.0` vs `1`, `-0`, reordered keys and other ambiguous encodings.
    """
    if len(data) > max_bytes:
        raise TooLarge(f"JSON document of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    # Input equal to its own re-encoding cannot hold a duplicate key (the re-encoding
    # keeps one) or NaN/Infinity (canonical() refuses them), so the plain parser suffices
    # when the bytes match; anything else is parsed again strictly, to name the fault.
    try:
        obj = json.loads(data, parse_constant=_no_constants)
        encoded = canonical_plain(obj) if _walk(obj, MAX_DEPTH) else _jcs(obj)
        if encoded == data:
            return obj
    except (MalformedDocument, RecursionError, ValueError):  # ValueError: not JSON, or an over-long integer
        pass
    loads_strict(data, max_bytes=max_bytes)
    raise MalformedDocument("document is not in canonical JSON form (RFC 8785)")


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: Any, *, length: int | None = None, what: str = "value") -> bytes:
    """Strict base64: standard alphabet, padding, and canonical (re-encodes identically)."""
    if not isinstance(text, str):
        raise MalformedDocument(f"{what}: base64 must be a string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedDocument(f"{what}: invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedDocument(f"{what}: non-canonical base64")
    if length is not None and len(raw) != length:
        raise MalformedDocument(f"{what}: expected {length} bytes, got {len(raw)}")
    return raw


_HEX = {64: re.compile("[0-9a-f]{64}"), 32: re.compile("[0-9a-f]{32}")}


def is_hex_digest(value: Any, length: int = 64) -> bool:
    """A string of exactly ``length`` lowercase hex digits (64: a BLAKE3 digest)."""
    pattern = _HEX.get(length) or _HEX.setdefault(length, re.compile(f"[0-9a-f]{{{length}}}"))
    return type(value) is str and pattern.fullmatch(value) is not None
