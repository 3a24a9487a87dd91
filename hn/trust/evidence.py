"""Evidence of cooperation that exists in the vault, and how an evidence id resolves.

Evidence ids (spec/trust_link@1.md, "Evidence"):

- ``shard:<shard id>``: a shard I sealed for the peer (event ``shard.create`` with
  ``recipient``) or one the peer sealed for me and I opened (``shard.receive`` with
  ``sender``). The signed, hash-chained event log is the record.
- ``mirror:<did tail>/<kind>/<id>``: an artefact of the peer's index mirrored under
  ``cache/federation/<did tail>/artifacts/``; it resolves only while the file's BLAKE3
  still equals its id (mirrored artefacts are content-addressed).
- ``backup:<id>``: a completed backup held for each other, recorded in the event log as
  ``backup.push`` / ``backup.create`` with ``target`` (mine, held by the peer) or
  ``backup.store`` / ``backup.accept`` with ``owner`` (the peer's, held by me).
- ``receipt:<name>``: ``receipts/<name>.json``, a signed document of any type whose
  signer is the peer, verified against the peer's pinned key history.

Every item is ``{"id", "kind", "at", "digest"}``; ``at`` is when the cooperation
happened, ``digest`` the BLAKE3 of what it is about.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hn.errors import HnError, InputError, NotFound
from hn.proto import timefmt
from hn.proto.canonical import doc_digest, is_hex_digest, loads_strict
from hn.proto.signed import verify_document
from hn.proto.trust import EVIDENCE_ID_RE
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import did_tail
from hn.vault.store import hash_file

BACKUP_OUT = ("backup.push", "backup.create")
BACKUP_IN = ("backup.store", "backup.accept")
MAX_RECEIPT = 1 << 20


class EvidenceError(InputError):
    """An evidence id does not resolve in this vault."""

    code = "evidence"


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    at: str
    digest: str
    peer: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "at": self.at, "digest": self.digest}


# -- the event log: shards and backups ------------------------------------------------
def _log_items(home: Home) -> Iterator[Item]:
    for event in home.events():
        kind = event.get("kind")
        data = event.get("data")
        at = event.get("issued_at")
        if not isinstance(data, dict) or not isinstance(at, str):
            continue
        if kind == "shard.create" or kind == "shard.receive":
            peer = data.get("recipient") if kind == "shard.create" else data.get("sender")
            shard_id = data.get("id")
            if isinstance(peer, str) and is_hex_digest(shard_id):
                yield Item(f"shard:{shard_id}", "shard", at, str(shard_id), peer)
        elif kind in BACKUP_OUT or kind in BACKUP_IN:
            peer = data.get("target") if kind in BACKUP_OUT else data.get("owner")
            backup_id = data.get("id")
            if isinstance(peer, str) and isinstance(backup_id, str) and EVIDENCE_ID_RE.match(f"backup:{backup_id}"):
                digest = data.get("digest") or data.get("payload_digest")
                yield Item(f"backup:{backup_id}", "backup", at,
                           str(digest) if is_hex_digest(digest) else doc_digest(data), peer)


# -- mirrored artefacts -------------------------------------------------------------------
def _mirror_root(home: Home, peer: str) -> Path:
    return home.path("cache", "federation", did_tail(peer), "artifacts")


def _mirror_item(home: Home, peer: str, rel: str) -> Item | None:
    parts = rel.split("/")
    if len(parts) != 2 or parts[0] not in ("doc", "shard") or not is_hex_digest(parts[1]):
        return None
    path = _mirror_root(home, peer) / parts[0] / parts[1]
    if not path.is_file() or path.is_symlink():
        return None
    digest, _ = hash_file(path)
    if digest != parts[1]:
        return None  # damaged or substituted after mirroring: not evidence of anything
    at = timefmt.fmt(path.stat().st_mtime)
    return Item(f"mirror:{did_tail(peer)}/{rel}", "mirror", at, digest, peer)


def _mirror_items(home: Home, peer: str) -> Iterator[Item]:
    root = _mirror_root(home, peer)
    for kind in ("doc", "shard"):
        folder = root / kind
        if folder.is_dir():
            for name in sorted(os.listdir(folder)):
                item = _mirror_item(home, peer, f"{kind}/{name}")
                if item is not None:
                    yield item


# -- receipts -----------------------------------------------------------------------------
def _receipt_item(home: Home, name: str) -> Item | None:
    path = home.path("receipts", f"{name}.json")
    if "/" in name or not path.is_file() or path.stat().st_size > MAX_RECEIPT:
        return None
    try:
        doc = loads_strict(path.read_bytes())
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            return None
        history = identities.known_history(home, str(doc.get("signer")))
        if history is None:
            return None
        verify_document(doc, history, doc["type"])
        at = doc.get("issued_at")
        timefmt.parse(at)
    except HnError:
        return None
    return Item(f"receipt:{name}", "receipt", str(at), doc_digest(doc), history.did)


def _receipt_items(home: Home) -> Iterator[Item]:
    folder = home.path("receipts")
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json") and not name.startswith("."):
                item = _receipt_item(home, name[: -len(".json")])
                if item is not None:
                    yield item


# -- public API ---------------------------------------------------------------------------
def collect(home: Home, peer: str) -> list[Item]:
    """Every piece of evidence of cooperation with ``peer`` found in the vault."""
    did_tail(peer)
    found: dict[str, Item] = {}
    for item in _log_items(home):
        if item.peer == peer:
            found.setdefault(item.id, item)
    shard_ids = {i.digest for i in found.values() if i.kind == "shard"}
    for item in _mirror_items(home, peer):
        # A shard both mirrored and opened is one exchange, counted once as the shard.
        if not (item.id.split("/")[-2] == "shard" and item.digest in shard_ids):
            found.setdefault(item.id, item)
    for item in _receipt_items(home):
        if item.peer == peer:
            found.setdefault(item.id, item)
    return sorted(found.values(), key=lambda i: i.id.encode("utf-8"))


def resolve(home: Home, evidence_id: str) -> Item:
    """Resolve one evidence id, or refuse it with a clear error."""
    evidence_id = evidence_id.strip()
    if not EVIDENCE_ID_RE.match(evidence_id):
        raise EvidenceError(
            f"evidence id {evidence_id!r} is not of the form shard:ID, mirror:TAIL/KIND/ID, backup:ID or receipt:NAME")
    kind, ref = evidence_id.split(":", 1)
    item: Item | None = None
    if kind in ("shard", "backup"):
        item = next((i for i in _log_items(home) if i.id == evidence_id), None)
    elif kind == "mirror":
        tail, _, rel = ref.partition("/")
        try:
            item = _mirror_item(home, "did:hn:" + tail, rel)
        except InputError:
            item = None
    elif kind == "receipt":
        item = _receipt_item(home, ref)
    if item is None:
        raise EvidenceError(f"evidence {evidence_id} does not resolve in this vault")
    return item


def resolve_for(home: Home, peer: str, ids: list[str]) -> list[Item]:
    """Resolve ``ids`` and check each one is about cooperation with ``peer``."""
    items = []
    for evidence_id in ids:
        item = resolve(home, evidence_id)
        if item.peer != peer:
            raise EvidenceError(f"evidence {item.id} is about {item.peer}, not {peer}")
        items.append(item)
    if not items:
        raise NotFound(f"no evidence given for {peer}")
    return items
