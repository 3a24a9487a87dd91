"""DNS TXT discovery: `_hn.<name> TXT "did:hn:...=https://node"` records, looked up with dnspython."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from hn.errors import InputError, NetworkError, NotFound
from hn.proto.keys import is_did
from hn.proto.presence import check_url

PREFIX = "_hn."
LIFETIME = 5.0
# One label of a domain name, in its ASCII form: letters, digits, '-' (not at either end)
# and '_' (as in "_hn" itself).
LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class TxtEntry:
    did: str
    url: str


def record_name(name: str) -> str:
    """``_hn.<name>``, for a domain given bare or already with the prefix; anything that is
    not a domain name (a URL, a path, an empty label, a label over 63 characters) is refused."""
    base = name.strip()
    base = (base[len(PREFIX):] if base.startswith(PREFIX) else base).rstrip(".")
    try:
        labels = base.encode("idna").decode("ascii").split(".") if base else []
    except UnicodeError:
        labels = []
    if not labels or len(base) > 253 - len(PREFIX) or not all(LABEL_RE.match(label) for label in labels):
        raise InputError(f"not a DNS name: {name!r} (give a domain such as example.org)")
    return PREFIX + base


def txt_record(name: str, did: str, url: str) -> dict[str, str]:
    value = f"{did}={url.rstrip('/')}"
    owner = record_name(name)
    return {"name": owner, "type": "TXT", "value": value, "line": f'{owner} TXT "{value}"'}


def parse_txt(text: str) -> TxtEntry | None:
    did, sep, url = text.partition("=")
    if not sep or not is_did(did):
        return None
    try:
        check_url(url, "TXT url")
    except InputError:
        return None
    return TxtEntry(did, url)


async def lookup_txt(name: str, server: tuple[str, int] | None = None) -> list[TxtEntry]:
    if server is not None:
        try:
            ipaddress.ip_address(server[0])
        except ValueError:
            raise InputError(f"the DNS server must be given as an IP address, not {server[0]!r}") from None
    resolver = dns.asyncresolver.Resolver(configure=server is None)
    if server is not None:
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    owner = record_name(name)
    try:
        answer = await resolver.resolve(owner, "TXT", lifetime=LIFETIME)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
        raise NotFound(f"no TXT record at {owner}") from exc
    except dns.exception.DNSException as exc:
        raise NetworkError(f"DNS lookup of {owner} failed: {exc}") from exc
    out = []
    for rdata in answer:
        text = b"".join(rdata.strings).decode("utf-8", "replace")
        entry = parse_txt(text)
        if entry is not None:
            out.append(entry)
    return out
