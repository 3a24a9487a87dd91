"""The roster of friends' nodes: config/federation.toml (the operator may edit it)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from hn.errors import InputError, NotFound
from hn.proto import timefmt
from hn.proto.keys import is_did
from hn.proto.presence import MAX_URL, check_url
from hn.vault.home import Home

FILE = "federation.toml"
# RFC 3986: a registered host name, and the characters a path may carry (percent escapes
# checked apart). A node's base URL has neither a query nor a fragment.
_REG_NAME = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+")
_PATH = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*")


def check_node_url(value: str, what: str) -> str:
    """A node's base URL as a user gives it (peer, relay, --public-url): http or https, a
    host, an optional port and path; no whitespace, no user name or password (they would
    be kept in plain text in the vault's config and signed into presences), no query or
    fragment. Returns it without trailing slashes; raises InputError with the reason."""
    if not value:
        raise InputError(f"{what} is empty: expected an http:// or https:// URL")
    # First, before any message repeats the value: the part before an @ may be a password.
    if "@" in re.split(r"[/?#]", value.split("://", 1)[-1], maxsplit=1)[0]:
        raise InputError(f"{what}: must not carry a user name or password (user:pass@host): it would be kept "
                         "in plain text in the vault's config; give the node's URL without it")
    if len(value) > MAX_URL:
        raise InputError(f"{what}: longer than {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InputError(f"{what}: {value!r} contains whitespace or control characters")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise InputError(f"{what}: only http and https URLs are allowed, not {value!r}")
    value = scheme.lower() + "://" + rest  # schemes are case-insensitive (RFC 3986 3.1)
    if not value.isascii():
        raise InputError(f"{what}: {value!r} has non-ASCII characters: write the host in its xn-- form "
                         "and percent-encode the path")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{what}: {value!r} is not a valid URL: {exc}") from exc
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise InputError(f"{what}: {value!r} must not have a query (?) or fragment (#)")
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    if not host:
        raise InputError(f"{what}: {value!r} names no host")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise InputError(f"{what}: {value!r} has an invalid IPv6 address") from exc
    elif not _REG_NAME.fullmatch(host):
        raise InputError(f"{what}: {value!r} has an invalid host name")
    if parts.netloc.endswith(":") or port == 0:
        raise InputError(f"{what}: {value!r} has an invalid port")
    if not _PATH.fullmatch(parts.path):
        raise InputError(f"{what}: {value!r} has characters a URL path may not carry unencoded")
    return check_url(value.rstrip("/"), what)


def peers(home: Home) -> list[dict[str, Any]]:
    return _entries(home)[0]


def _entries(home: Home) -> tuple[list[dict[str, Any]], list[str]]:
    """The roster file's peers (sorted by DID), and one line for each entry that is not a
    peer (edited by hand: a DID mistyped, a URL that is not text). Those are kept in the
    file, and not used."""
    raw = home.read_toml(FILE).get("peers", [])
    if not isinstance(raw, list):
        return [], [f"config/{FILE}: peers is not a list of [[peers]] tables"]
    usable, problems = [], []
    for number, peer in enumerate(raw, 1):
        if not isinstance(peer, dict):
            problems.append(f"config/{FILE}: peer entry {number} is not a table")
        elif not is_did(peer.get("did")):
            problems.append(f"config/{FILE}: peer entry {number} has did = {peer.get('did')!r}, not a did:hn DID")
        elif not isinstance(peer.get("url"), str):
            problems.append(f"config/{FILE}: peer entry {number} ({peer['did']}) has no url text")
        else:
            usable.append(peer)
    return sorted(usable, key=lambda p: p["did"]), problems


def is_friend(home: Home, did: str) -> bool:
    return any(p["did"] == did for p in peers(home))


def get(home: Home, did: str) -> dict[str, Any]:
    for peer in peers(home):
        if peer["did"] == did:
            return peer
    raise NotFound(f"{did} is not in your federation roster (`hn mcp federate list`)")


def checked(did: str, url: str) -> str:
    """The peer URL as the roster keeps it, after checking it and the DID."""
    if not is_did(did):
        raise InputError(f"not a did:hn DID: {did!r}")
    return check_node_url(url, "peer URL")


def unusable(home: Home) -> list[str]:
    """The entries of the roster file that are not a peer, one line each (see _entries)."""
    return _entries(home)[1]


def _rewrite(home: Home, did: str, entry: dict[str, Any] | None) -> None:
    """Replace (or, with no ``entry``, remove) peer ``did`` in the roster file, under the
    vault lock, keeping every other entry and setting as the file has them, usable or not."""
    with home.lock():
        data = home.read_toml(FILE)
        raw = data.get("peers", [])
        if not isinstance(raw, list):
            raise InputError(f"config/{FILE}: peers is not a list of [[peers]] tables; fix the file first")
        rest = [p for p in raw if not (isinstance(p, dict) and p.get("did") == did)]
        if entry is not None:
            rest.append(entry)
        data["peers"] = sorted(rest, key=lambda p: str(p.get("did")) if isinstance(p, dict) else "")
        home.write_toml(FILE, data)


def add(home: Home, did: str, url: str) -> dict[str, Any]:
    url = checked(did, url)
    entry = {"did": did, "url": url, "added_at": timefmt.now_iso()}
    _rewrite(home, did, entry)
    return entry


def remove(home: Home, did: str) -> None:
    get(home, did)
    _rewrite(home, did, None)
