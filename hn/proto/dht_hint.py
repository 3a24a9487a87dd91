"""dht_hint@1: a signed pointer from a DID to its presence@2, small enough for one datagram.

See spec/dht_hint@1.md. The hint carries a compact form of the signer's key chain so that
anyone holding only the DID can check the signature: each chain entry is the four fields
of a key@1 entry that cannot be recomputed (signing key, HPKE key, created_at, signature);
type, did, seq, prev, signer and key_seq follow from the position in the chain. The chain
is rebuilt into key@1 entries and checked by the same code that checks identity@1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blake3

from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import b64d, b64e, canonical, doc_digest, is_hex_digest, loads_canonical
from hn.proto.identity import KEY_TYPE, KeyHistory, verify_key_history
from hn.proto.keys import IdentityKeys, is_did
from hn.proto.presence import check_url
from hn.proto.signed import check_envelope, require, sign_document, verify_document

HINT_TYPE = "dht_hint@1"
MAX_BYTES = 1200
MAX_TTL = 7 * 24 * 3600
# A hint issued this far in the future is refused: bounded clock skew (THREATS.md 14).
MAX_SKEW = 2 * 3600 + 300
MAX_URL = 512
KEY_BYTES = 20
FIELDS = {"type", "did", "seq", "presence_digest", "presence_url", "issued_at", "expires_at",
          "keys", "signer", "key_seq", "signature", "relay"}


class SkewError(VerificationError):
    """A hint issued further ahead of our clock than the skew window allows."""

    def __init__(self, message: str, ahead: float) -> None:
        super().__init__(message)
        self.ahead = ahead


def dht_key(did: str) -> bytes:
    """The DHT key of a DID: the first 20 bytes of BLAKE3(did), used as is (never rehashed)."""
    return blake3.blake3(did.encode("utf-8")).digest()[:KEY_BYTES]


def compact_chain(history: KeyHistory, upto: int | None = None) -> list[list[str]]:
    last = history.current.seq if upto is None else upto
    out = []
    for entry in history.entries[: last + 1]:
        out.append([entry["signing_public_key"], entry["hpke_public_key"], entry["created_at"], entry["signature"]])
    return out


def expand_chain(did: str, chain: Any) -> list[dict[str, Any]]:
    """The key@1 entries a compact chain stands for (not yet verified)."""
    if not isinstance(chain, list) or not chain:
        raise MalformedDocument("dht_hint@1: keys must be a non-empty list")
    entries: list[dict[str, Any]] = []
    for index, item in enumerate(chain):
        if not isinstance(item, list) or len(item) != 4 or not all(isinstance(x, str) for x in item):
            raise MalformedDocument(f"dht_hint@1: key {index} must be four strings")
        spk, hpke, created, signature = item
        entries.append({
            "type": KEY_TYPE, "did": did, "seq": index, "signing_public_key": spk,
            "hpke_public_key": hpke, "created_at": created,
            "prev": doc_digest(entries[-1]) if entries else "",
            "signer": did, "key_seq": max(index - 1, 0), "signature": signature,
        })
    return entries


def chain_history(did: str, chain: Any) -> KeyHistory:
    return verify_key_history(did, expand_chain(did, chain))


@dataclass(frozen=True)
class Hint:
    raw: bytes
    doc: dict[str, Any]
    history: KeyHistory

    @property
    def did(self) -> str:
        return str(self.doc["did"])

    @property
    def seq(self) -> int:
        return int(self.doc["seq"])

    @property
    def key(self) -> bytes:
        return dht_key(self.did)

    @property
    def expires(self) -> float:
        return timefmt.parse(self.doc["expires_at"])

    @property
    def issued(self) -> float:
        return timefmt.parse(self.doc["issued_at"])

    @property
    def presence_url(self) -> str:
        return str(self.doc["presence_url"])

    @property
    def presence_digest(self) -> str:
        return str(self.doc["presence_digest"])

    @property
    def relay(self) -> str | None:
        value = self.doc.get("relay")
        return value if isinstance(value, str) else None


def build_hint(
    keys: IdentityKeys, history: KeyHistory, *, seq: int, presence_digest: str, presence_url: str,
    issued_at: float, ttl: int = MAX_TTL, relay: str | None = None,
) -> bytes:
    """Sign a hint with the current key; returns its canonical bytes (at most 1,200)."""
    if not 0 < ttl <= MAX_TTL:
        raise MalformedDocument(f"dht_hint@1 lifetime must be between 1 s and {MAX_TTL} s")
    body: dict[str, Any] = {
        "type": HINT_TYPE,
        "did": history.did,
        "seq": seq,
        "presence_digest": presence_digest,
        "presence_url": presence_url,
        "issued_at": timefmt.fmt(issued_at),
        "expires_at": timefmt.fmt(issued_at + ttl),
        "keys": compact_chain(history, keys.key_seq),
    }
    if relay is not None:
        body["relay"] = relay
    raw = canonical(sign_document(body, keys))
    if len(raw) > MAX_BYTES:
        raise TooLarge(
            f"dht_hint@1 would be {len(raw)} bytes, over the {MAX_BYTES}-byte limit "
            "(shorten the presence URL or drop the relay)"
        )
    parse_hint(raw)
    return raw


def check_hint(doc: Any) -> dict[str, Any]:
    """Shape checks, before any cryptography."""
    check_envelope(doc, HINT_TYPE)
    what = HINT_TYPE
    extra = set(doc) - FIELDS
    if extra:
        raise MalformedDocument(f"{what}: unknown fields {sorted(extra)}")
    did = require(doc, "did", str, what)
    if not is_did(did) or did != doc["signer"]:
        raise VerificationError(f"{what}: did differs from its signer")
    if require(doc, "seq", int, what) < 1:
        raise MalformedDocument(f"{what}: seq must be at least 1")
    if not is_hex_digest(require(doc, "presence_digest", str, what)):
        raise MalformedDocument(f"{what}: presence_digest is not a hex digest")
    url = check_url(require(doc, "presence_url", str, what), f"{what} presence_url")
    if len(url) > MAX_URL:
        raise MalformedDocument(f"{what}: presence_url longer than {MAX_URL} characters")
    issued = timefmt.parse(require(doc, "issued_at", str, what), "issued_at")
    expires = timefmt.parse(require(doc, "expires_at", str, what), "expires_at")
    if not 0 < expires - issued <= MAX_TTL:
        raise MalformedDocument(f"{what}: lifetime must be more than 0 and at most 7 days")
    if "relay" in doc and not is_did(doc["relay"]):
        raise MalformedDocument(f"{what}: relay is not a DID")
    chain = require(doc, "keys", list, what)
    if len(chain) != doc["key_seq"] + 1:
        raise VerificationError(f"{what}: key chain must end at the signing key {doc['key_seq']}")
    return doc


def parse_hint(raw: Any, *, now: float | None = None, key: bytes | None = None) -> Hint:
    """Verify a hint from its bytes alone: size, canonical form, schema, key chain, signature.

    With ``now`` also refuse expired hints and hints issued beyond the skew window; with
    ``key`` also refuse a hint stored under another key than BLAKE3(did)[:20].
    """
    if not isinstance(raw, bytes):
        raise MalformedDocument(f"{HINT_TYPE}: value must be bytes, not {type(raw).__name__}")
    if len(raw) > MAX_BYTES:
        raise TooLarge(f"{HINT_TYPE}: {len(raw)} bytes is over the {MAX_BYTES}-byte limit")
    doc = check_hint(loads_canonical(raw, max_bytes=MAX_BYTES))
    history = chain_history(doc["did"], doc["keys"])
    verify_document(doc, history, HINT_TYPE)
    hint = Hint(raw, doc, history)
    if key is not None and key != hint.key:
        raise VerificationError(f"{HINT_TYPE}: stored under a key other than BLAKE3(did)[:20]")
    if now is not None:
        if hint.expires <= now:
            raise VerificationError(f"{HINT_TYPE} of {hint.did} expired at {doc['expires_at']}")
        if hint.issued > now + MAX_SKEW:
            ahead = hint.issued - now
            raise SkewError(f"{HINT_TYPE} of {hint.did} is issued too far in the future, {int(ahead)} s "
                            f"ahead of this clock (at most {MAX_SKEW} s of skew is allowed)", ahead)
    return hint


def newest(hints: list[Hint]) -> Hint | None:
    """The highest seq wins, never the most common value; ties broken by bytes for determinism."""
    if not hints:
        return None
    return max(hints, key=lambda h: (h.seq, h.raw))


def b64_value(hint: Hint) -> str:
    return b64e(hint.raw)


def from_b64(text: Any) -> bytes:
    return b64d(text, what="dht_hint@1")
