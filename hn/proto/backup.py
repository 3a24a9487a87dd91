"""backup@1: the signed header of an encrypted vault backup (spec/backup@1.md).

The header names every file of the snapshot (path, digest, size, mode, and whether the
payload carries it), their Merkle root, and the encrypted payload's digest and size.
The payload is a separate stream: a deterministic ustar archive, zstd-compressed, then
sealed in chunks (hn.proto.chunked) to the recipient's HPKE key. Chunk AAD is
``payload_aad(header)``: the fields fixed before the payload exists, so the header can
sign the payload digest without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hn.errors import MalformedDocument, TooLarge, VerificationError
from hn.proto import chunked, merkle, timefmt
from hn.proto.canonical import MAX_SAFE_INT, Splicer, b64d, canonical, digest, hexdigest, is_hex_digest, loads_canonical
from hn.proto.identity import KeyHistory, accept_update, verify_identity
from hn.proto.keys import SUITE_NAME, IdentityKeys, is_did
from hn.proto.signed import check_envelope, require, sign_document, verify_document

BACKUP_TYPE = "backup@1"
INFO = b"hn backup@1"
COMPRESSION = "zstd"
ARCHIVE = "ustar"
SCOPES = ("full", "delta")
MAX_HEADER = 256 * 1024 * 1024
MAX_ENTRIES = 2_000_000
MAX_PATH = 1024
ID_CHARS = 32
MODES = (0o644, 0o600, 0o755)


def compute_id(header: dict[str, Any], encode: Callable[[Any], bytes] = canonical) -> str:
    """The id is BLAKE3 of the header without id and signature fields (first 32 hex)."""
    body = {k: v for k, v in header.items() if k not in ("id", "signer", "key_seq", "signature")}
    return hexdigest(encode(body))[:ID_CHARS]


def seal(header: dict[str, Any], keys: IdentityKeys) -> tuple[dict[str, Any], bytes]:
    """Give the header its id and signature; returns it with its canonical bytes.

    The entry list is most of a large header, so it is encoded once and spliced into the
    three encodings (id, signed bytes, the file), which equal plain ``canonical``'s. The
    entries are create's own (string paths and digests, small integers, booleans), so
    they are not walked first; a list that were not plain would fail every verification.
    Only the sizes come from outside (the files): one JCS cannot encode is refused here.
    """
    entries = header["entries"]
    largest = max(entries, key=lambda e: e["size"], default=None)
    if largest is not None and largest["size"] > MAX_SAFE_INT:
        raise MalformedDocument(f"backup@1: {largest['path']} holds 2^53 bytes or more, which a header cannot list")
    encode = Splicer("entries", entries, plain=True)
    header = {**header, "id": compute_id(header, encode)}
    signed = sign_document(header, keys, encode=encode)
    return signed, encode(signed)


def is_backup_id(value: Any) -> bool:
    return is_hex_digest(value, ID_CHARS)


def payload_aad(header: dict[str, Any]) -> bytes:
    """AAD of every payload chunk: binds the owner, the HPKE encapsulation and the recipient key."""
    bound = {
        "type": BACKUP_TYPE + " payload",
        "owner": header["owner"],
        "created_at": header["created_at"],
        "enc": header["enc"],
        "recipient": header["recipient"],
        "recipient_key_id": header["recipient_key_id"],
    }
    return digest(canonical(bound))


def merkle_root(entries: list[dict[str, Any]]) -> str:
    """Root over the entry digests in path order (the order the header lists them)."""
    return merkle.root([bytes.fromhex(e["digest"]) for e in entries]).hex()


def check_path(path: Any) -> str:
    """A vault-relative path: no absolute paths, no `..`, no empty parts, no NUL or backslash."""
    if not isinstance(path, str) or not path or len(path.encode("utf-8")) > MAX_PATH:
        raise MalformedDocument(f"backup@1: bad entry path {path!r}")
    # Framed in slashes, an empty, `.` or `..` part (or a leading slash) shows as one of these.
    framed = f"/{path}/"
    if "\\" in path or "\x00" in path or "//" in framed or "/./" in framed or "/../" in framed:
        raise MalformedDocument(f"backup@1: unsafe entry path {path!r}")
    return path


ENTRY_FIELDS = frozenset(("path", "digest", "size", "mode", "stored"))


def _check_entries(entries: Any) -> None:
    if not isinstance(entries, list):
        raise MalformedDocument("backup@1: entries must be a list")
    if len(entries) > MAX_ENTRIES:
        raise TooLarge(f"backup@1: more than {MAX_ENTRIES} entries")
    previous = b""
    for index, entry in enumerate(entries):
        if type(entry) is not dict or entry.keys() != ENTRY_FIELDS:
            raise MalformedDocument(f"backup@1 entry {index}: expected path, digest, size, mode, stored")
        name = check_path(entry["path"]).encode("utf-8")
        if name <= previous:
            raise MalformedDocument(f"backup@1 entry {index}: entries must be sorted by path, without duplicates")
        previous = name
        digest, size, mode = entry["digest"], entry["size"], entry["mode"]
        if not is_hex_digest(digest):
            raise MalformedDocument(f"backup@1 entry {index}: digest is not BLAKE3 hex")
        if type(size) is not int or not 0 <= size <= MAX_SAFE_INT:
            raise MalformedDocument(f"backup@1 entry {index}: size must be a non-negative integer below 2^53")
        if type(mode) is not int or mode not in MODES:
            raise MalformedDocument(f"backup@1 entry {index}: mode must be one of 644, 600, 755 (octal)")
        if type(entry["stored"]) is not bool:
            raise MalformedDocument(f"backup@1 entry {index}: stored must be true or false")
    # A directory and a file of the same name cannot both exist. Sorted paths share
    # parents with their neighbours, so each folder is looked at about once.
    names = {e["path"] for e in entries}
    folders: set[str] = set()
    for entry in entries:
        parent = entry["path"].rpartition("/")[0]
        while parent and parent not in folders:
            if parent in names:
                raise MalformedDocument(f"backup@1: {entry['path']!r} lies under the file {parent!r}")
            folders.add(parent)
            parent = parent.rpartition("/")[0]


def _check_shape(header: Any) -> Splicer:
    """Every structural rule of backup@1, before any signature check; returns the encoder
    that shares the encoded entries with the id and signature checks."""
    check_envelope(header, BACKUP_TYPE)
    what = BACKUP_TYPE
    owner = require(header, "owner", str, what)
    if not is_did(owner) or header["signer"] != owner:
        raise VerificationError("backup@1 must be signed by its owner")
    timefmt.parse(require(header, "created_at", str, what), "created_at")
    scope = require(header, "scope", str, what)
    if scope not in SCOPES:
        raise MalformedDocument(f"backup@1: unknown scope {scope!r}")
    base = header.get("base_backup", "missing")
    if scope == "full" and base is not None:
        raise MalformedDocument("backup@1: a full backup has base_backup null")
    if scope == "delta" and not is_backup_id(base):
        raise MalformedDocument("backup@1: a delta names its base_backup id")
    target = header.get("target", "missing")
    if target is not None and not is_did(target):
        raise MalformedDocument("backup@1: target must be a DID or null")
    if not is_did(require(header, "recipient", str, what)):
        raise MalformedDocument("backup@1: recipient is not a DID")
    if require(header, "recipient_key_seq", int, what) < 0:
        raise MalformedDocument("backup@1: negative recipient_key_seq")
    key_id = require(header, "recipient_key_id", str, what)
    if not is_backup_id(key_id):
        raise MalformedDocument("backup@1: recipient_key_id must be 32 hex characters")
    b64d(require(header, "enc", str, what), length=32, what="enc")
    algorithm = require(header, "algorithm", dict, what)
    expected = {"hpke": SUITE_NAME, "compression": COMPRESSION, "archive": ARCHIVE}
    for key, value in expected.items():
        if algorithm.get(key) != value:
            raise MalformedDocument(f"backup@1: algorithm.{key} must be {value!r}")
    chunk_size = require(algorithm, "chunk_size", int, "algorithm")
    if not chunked.MIN_CHUNK <= chunk_size <= chunked.MAX_CHUNK:
        raise MalformedDocument("backup@1: chunk_size out of range")
    if set(algorithm) != {"hpke", "compression", "archive", "chunk_size"}:
        raise MalformedDocument("backup@1: unknown algorithm fields")
    payload = require(header, "payload", dict, what)
    if set(payload) != {"digest", "size", "compressed_size", "archive_size"}:
        raise MalformedDocument("backup@1: payload needs digest, size, compressed_size, archive_size")
    if not is_hex_digest(payload["digest"]):
        raise MalformedDocument("backup@1: payload digest is not BLAKE3 hex")
    for key in ("size", "compressed_size", "archive_size"):
        if require(payload, key, int, "payload") < 0:
            raise MalformedDocument(f"backup@1: negative payload {key}")
    entries = require(header, "entries", list, what)
    _check_entries(entries)
    if require(header, "merkle_root", str, what) != merkle_root(entries):
        raise VerificationError("backup@1: merkle_root does not match the entries")
    stored = [e for e in entries if e["stored"]]
    if scope == "full" and len(stored) != len(entries):
        raise MalformedDocument("backup@1: a full backup stores every entry")
    # A ustar member costs at least 512 bytes of header plus its data rounded up to 512.
    floor = sum(512 + -(-e["size"] // 512) * 512 for e in stored) + 1024
    if payload["archive_size"] < floor:
        raise MalformedDocument("backup@1: archive_size is smaller than the stored entries need")
    identity = require(header, "identity", dict, what)
    if identity.get("did") != owner:
        raise VerificationError("backup@1: the embedded identity is not the owner's")
    encode = Splicer("entries", entries, plain=True)  # _check_entries has seen every value
    if require(header, "id", str, what) != compute_id(header, encode):
        raise VerificationError("backup@1: id does not match the header")
    return encode


def owner_history(header: dict[str, Any], pinned: KeyHistory | None) -> KeyHistory:
    """The owner's key history: the embedded identity@1, never older than a pinned one."""
    embedded = verify_identity(header["identity"])
    if pinned is None:
        return embedded
    try:
        return accept_update(pinned, embedded)
    except VerificationError:
        # An older embedded history than the one pinned is fine for an old backup.
        if pinned.extends(embedded):
            return pinned
        raise


def verify_header(header: Any, pinned: KeyHistory | None = None, expected_owner: str | None = None) -> KeyHistory:
    """Shape, owner and signature; returns the owner's key history."""
    encode = _check_shape(header)
    if expected_owner is not None and header["owner"] != expected_owner:
        raise VerificationError(f"backup belongs to {header['owner']}, expected {expected_owner}")
    history = owner_history(header, pinned)
    verify_document(header, history, BACKUP_TYPE, time_field="created_at", encode=encode)
    return history


def parse_header(raw: bytes) -> dict[str, Any]:
    doc = loads_canonical(raw, max_bytes=MAX_HEADER)
    if not isinstance(doc, dict):
        raise MalformedDocument("backup@1: expected a JSON object")
    if doc.get("type") != BACKUP_TYPE:
        raise MalformedDocument(f"expected a {BACKUP_TYPE} document, got {str(doc.get('type'))[:40]!r}")
    if not is_backup_id(doc.get("id")):
        raise MalformedDocument(f"{BACKUP_TYPE}: the id is not 32 lowercase hex characters")
    return doc
