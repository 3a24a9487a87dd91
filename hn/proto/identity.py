"""identity@1: a DID's public key history and current HPKE key (spec/identity@1.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hn.errors import ForkError, MalformedDocument, RollbackError, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import b64d, b64e, doc_digest
from hn.proto.keys import IdentityKeys, did_from_public_key, is_did, verify_ed25519
from hn.proto.signed import check_envelope, require, sign_document, signing_bytes, verify_document

IDENTITY_TYPE = "identity@1"
KEY_TYPE = "key@1"
MAX_KEYS = 256


@dataclass(frozen=True)
class KeyEntry:
    seq: int
    signing_public_key: bytes
    hpke_public_key: bytes
    created_at: float
    digest: str


@dataclass(frozen=True)
class KeyHistory:
    """A verified key history: ``keys[k]`` is the key with seq ``k``."""

    did: str
    keys: tuple[KeyEntry, ...]
    entries: tuple[dict[str, Any], ...]

    @property
    def current(self) -> KeyEntry:
        return self.keys[-1]

    def extends(self, older: KeyHistory) -> bool:
        """True if this history starts with every entry of ``older`` (same or newer)."""
        if self.did != older.did or len(self.keys) < len(older.keys):
            return False
        return all(a.digest == b.digest for a, b in zip(self.keys, older.keys))


def make_key_entry(
    keys: IdentityKeys, seq: int, created_at: str, prev: dict[str, Any] | None
) -> dict[str, Any]:
    """Key entry ``seq``, signed by key ``seq - 1`` (the genesis entry signs itself)."""
    entry = {
        "type": KEY_TYPE,
        "did": keys.did,
        "seq": seq,
        "signing_public_key": b64e(keys.signing_public(seq)),
        "hpke_public_key": b64e(keys.hpke_public(seq)),
        "created_at": created_at,
        "prev": doc_digest(prev) if prev is not None else "",
    }
    return sign_document(entry, keys, seq=max(seq - 1, 0))


def verify_key_history(did: str, entries: Any) -> KeyHistory:
    if not is_did(did):
        raise MalformedDocument("identity: not a did:hn DID")
    if not isinstance(entries, list) or not entries:
        raise MalformedDocument("identity: key history must be a non-empty list")
    if len(entries) > MAX_KEYS:
        raise MalformedDocument(f"identity: more than {MAX_KEYS} keys")
    out: list[KeyEntry] = []
    for index, entry in enumerate(entries):
        check_envelope(entry, KEY_TYPE)
        what = f"key entry {index}"
        if require(entry, "seq", int, what) != index:
            raise VerificationError(f"{what}: seq is {entry['seq']}, expected {index}")
        if require(entry, "did", str, what) != did or entry["signer"] != did:
            raise VerificationError(f"{what}: belongs to another DID")
        signing = b64d(require(entry, "signing_public_key", str, what), length=32, what=what)
        hpke = b64d(require(entry, "hpke_public_key", str, what), length=32, what=what)
        created = timefmt.parse(require(entry, "created_at", str, what), f"{what} created_at")
        prev = require(entry, "prev", str, what)
        signature = b64d(entry["signature"], length=64, what=what)
        if index == 0:
            if did_from_public_key(signing) != did:
                raise VerificationError("key history does not start at the key the DID names")
            if prev != "" or entry["key_seq"] != 0:
                raise VerificationError("genesis key entry is malformed")
            signer_key = signing
        else:
            if entry["key_seq"] != index - 1:
                raise VerificationError(f"{what}: must be signed by key {index - 1}")
            if prev != out[-1].digest:
                raise VerificationError(f"{what}: does not chain to the previous key")
            if created < out[-1].created_at:
                raise VerificationError(f"{what}: created before the key it replaces")
            signer_key = out[-1].signing_public_key
        if not verify_ed25519(signer_key, signing_bytes(entry), signature):
            raise VerificationError(f"{what}: signature does not verify")
        out.append(KeyEntry(index, signing, hpke, created, doc_digest(entry)))
    return KeyHistory(did, tuple(out), tuple(entries))


def build_identity(
    keys: IdentityKeys, alias: str, entries: list[dict[str, Any]], issued_at: str
) -> dict[str, Any]:
    doc = {
        "type": IDENTITY_TYPE,
        "did": keys.did,
        "alias": alias,
        "issued_at": issued_at,
        "keys": entries,
        "hpke_public_key": entries[-1]["hpke_public_key"],
    }
    return sign_document(doc, keys, seq=len(entries) - 1)


def verify_identity(doc: Any) -> KeyHistory:
    """Verify an identity@1 document from its DID alone (self-certifying)."""
    check_envelope(doc, IDENTITY_TYPE)
    did = require(doc, "did", str, IDENTITY_TYPE)
    require(doc, "alias", str, IDENTITY_TYPE)
    history = verify_key_history(did, require(doc, "keys", list, IDENTITY_TYPE))
    if doc["key_seq"] != len(history.keys) - 1:
        raise VerificationError("identity@1 must be signed by the newest key")
    if b64d(require(doc, "hpke_public_key", str, IDENTITY_TYPE), length=32) != history.current.hpke_public_key:
        raise VerificationError("identity@1 hpke_public_key is not the newest key's")
    verify_document(doc, history, IDENTITY_TYPE)
    return history


def accept_update(pinned: KeyHistory | None, offered: KeyHistory) -> KeyHistory:
    """The newer of a pinned history and an offered one; refuse rollback and forks."""
    if pinned is None:
        return offered
    if pinned.did != offered.did:
        raise VerificationError(f"identity is for {offered.did}, expected {pinned.did}")
    common = min(len(pinned.keys), len(offered.keys))
    for a, b in zip(pinned.keys[:common], offered.keys[:common]):
        if a.digest != b.digest:
            raise ForkError(f"key history of {pinned.did} forks at key {a.seq}")
    if len(offered.keys) < len(pinned.keys):
        raise RollbackError(
            f"key history of {pinned.did} rolled back: offered {len(offered.keys)} keys, "
            f"{len(pinned.keys)} already known"
        )
    return offered
