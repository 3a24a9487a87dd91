"""index@2: signed, Merkle-proven slices of a vault's published index (spec/index@2.md).

A publisher's index changes are ordered by (change seq, id): the change seq is the
event-log seq of the entry's last index-visible change. A cursor names a position in
that order: ``"S"`` means every change up to seq S; ``"S-ID"`` means every change
before seq S plus those at seq S with an id up to ID (a page boundary inside one
batch). A slice carries the changes after its ``cursor`` up to its ``next_cursor``.
"""

from __future__ import annotations

import re
from typing import Any

import blake3

from hn.errors import MalformedDocument, VerificationError
from hn.proto import merkle
from hn.proto.canonical import MAX_SAFE_INT, canonical, canonical_plain, doc_digest, is_hex_digest
from hn.proto.identity import KeyHistory
from hn.proto.keys import IdentityKeys, is_did
from hn.proto.presence import check_url
from hn.proto.signed import check_envelope, require, sign_document, verify_document

INDEX_TYPE = "index@2"
MAX_SLICE_ENTRIES = 5000
ENTRY_TYPES = ("doc", "shard")
TOMBSTONE = "tombstone"
MAX_METADATA_KEYS = 16
MAX_METADATA_VALUE = 2048
_CURSOR = re.compile(r"^(0|[1-9][0-9]{0,15})(-[0-9a-f]{64})?$")

Position = tuple[int, str]  # (change seq, id); id "" = before every id at that seq


def parse_cursor(text: Any) -> Position:
    """Position *after which* changes are wanted."""
    if not isinstance(text, str) or not _CURSOR.match(text):
        raise MalformedDocument(f"invalid index cursor {text!r}")
    if "-" in text:
        seq, last = text.split("-", 1)
        return int(seq), last
    return int(text), "\uffff"  # all of seq S delivered


def format_cursor(pos: Position) -> str:
    seq, last = pos
    return str(seq) if last == "\uffff" else f"{seq}-{last}"


def entry_leaf(entry: dict[str, Any]) -> bytes:
    """Leaf of the slice tree: BLAKE3 of the entry's canonical bytes (covers metadata and tombstones)."""
    return blake3.blake3(canonical(entry)).digest()


def slice_root(entries: list[dict[str, Any]]) -> str:
    return merkle.root([entry_leaf(e) for e in entries]).hex()


def _checked_leaf(entry: dict[str, Any]) -> bytes:
    """entry_leaf for an entry check_entry accepted: only ASCII keys, strings and safe
    integers, for which JCS is exactly the compact sorted stdlib encoding (no tree walk)."""
    return blake3.blake3(canonical_plain(entry)).digest()


def index_root(entries: list[dict[str, Any]]) -> str:
    """Root of the full index: leaves are artefact digests ordered by id (DESIGN.md)."""
    return merkle.root([bytes.fromhex(e["digest"]) for e in entries]).hex()


def tombstone(kind: str, entry_id: str) -> dict[str, Any]:
    return {"type": TOMBSTONE, "id": entry_id, "path": "", "digest": "", "size": 0, "metadata": {"was": kind}}


def build_slice(
    keys: IdentityKeys, source: str, presence: dict[str, Any], cursor: str, next_cursor: str,
    more: bool, entries: list[dict[str, Any]], issued_at: str,
) -> dict[str, Any]:
    entries = sorted(entries, key=lambda e: e["id"].encode("utf-8"))
    body = {
        "type": INDEX_TYPE,
        "publisher": keys.did,
        "source": source,
        "presence_digest": doc_digest(presence),
        "presence_seq": presence["seq"],
        "cursor": cursor,
        "next_cursor": next_cursor,
        "more": more,
        "entries": entries,
        "slice_root": slice_root(entries),
        "tree_size": presence["index"]["size"],
        "index_root": presence["index"]["root"],
        "issued_at": issued_at,
    }
    return sign_document(body, keys)


def check_entry(entry: Any) -> dict[str, Any]:
    what = "index@2 entry"
    kind = require(entry, "type", str, what)
    entry_id = require(entry, "id", str, what)
    if not is_hex_digest(entry_id):
        raise MalformedDocument(f"{what}: id is not a BLAKE3 hex digest")
    path = require(entry, "path", str, what)
    digest = require(entry, "digest", str, what)
    size = require(entry, "size", int, what)
    metadata = require(entry, "metadata", dict, what)
    if len(entry) != 6:
        raise MalformedDocument(f"{what}: unexpected fields")
    if len(metadata) > MAX_METADATA_KEYS or not all(
            type(k) is str and k.isascii() and len(k) <= 64 and type(v) is str and len(v) <= MAX_METADATA_VALUE
            for k, v in metadata.items()):
        raise MalformedDocument(f"{what}: metadata must map at most {MAX_METADATA_KEYS} ASCII names to strings")
    if kind == TOMBSTONE:
        if path or digest or size or metadata.get("was") not in ENTRY_TYPES:
            raise MalformedDocument(f"{what}: malformed tombstone")
        return entry
    if kind not in ENTRY_TYPES:
        raise MalformedDocument(f"{what}: unknown type {kind!r}")
    # The path is fully determined by type and id: anything else (../, absolute, other
    # names) is refused here, so a mirror can never write outside its folder.
    if path != f"{kind}/{entry_id}":
        raise VerificationError(f"{what}: path {path!r} is not {kind}/<id> (path traversal refused)")
    if not is_hex_digest(digest) or not 0 <= size <= MAX_SAFE_INT:
        raise MalformedDocument(f"{what}: bad digest or size")
    if kind == "doc" and digest != entry_id:
        raise VerificationError(f"{what}: a document's id must be its digest")
    if kind == "shard" and not is_did(metadata.get("recipient")):
        raise MalformedDocument(f"{what}: a shard's metadata must name its recipient's did:hn DID")
    return entry


def verify_slice(doc: Any, history: KeyHistory, presence: dict[str, Any]) -> dict[str, Any]:
    """Verify a slice against the publisher's key history and its verified presence@2."""
    check_envelope(doc, INDEX_TYPE)
    what = INDEX_TYPE
    if require(doc, "publisher", str, what) != doc["signer"] or doc["signer"] != presence["did"]:
        raise VerificationError("index@2 publisher differs from its signer or the presence")
    check_url(require(doc, "source", str, what), "index@2 source")
    verify_document(doc, history, INDEX_TYPE)
    if require(doc, "presence_digest", str, what) != doc_digest(presence):
        raise VerificationError("index@2 slice was made for another presence@2 (presence digest mismatch)")
    if require(doc, "presence_seq", int, what) != presence["seq"]:
        raise VerificationError("index@2 presence_seq differs from the presence")
    parse_cursor(require(doc, "cursor", str, what))
    parse_cursor(require(doc, "next_cursor", str, what))
    if not isinstance(doc.get("more"), bool):
        raise MalformedDocument("index@2: more must be a boolean")
    entries = require(doc, "entries", list, what)
    if len(entries) > MAX_SLICE_ENTRIES:
        raise MalformedDocument(f"index@2 slice has more than {MAX_SLICE_ENTRIES} entries")
    ids = [check_entry(e)["id"] for e in entries]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise MalformedDocument("index@2 entries must be sorted by id without duplicates")
    if require(doc, "slice_root", str, what) != merkle.root([_checked_leaf(e) for e in entries]).hex():
        raise VerificationError("index@2 slice Merkle root does not match its entries")
    if require(doc, "tree_size", int, what) != presence["index"]["size"]:
        raise VerificationError("index@2 tree_size differs from the presence")
    if require(doc, "index_root", str, what) != presence["index"]["root"]:
        raise VerificationError("index@2 index_root differs from the presence")
    return doc
