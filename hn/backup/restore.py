"""Verify and restore a backup (or a delta chain) into a folder, through staging and a journal."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hn.backup import swap
from hn.backup.create import HEADER_SUFFIX, payload_path_for
from hn.backup.extract import Extractor
from hn.backup.local import read_header_file
from hn.backup.payload import open_archive, recipient_key, require_payload, verify_payload_digest
from hn.errors import HnError, InputError, VerificationError, cannot
from hn.proto import backup as proto
from hn.proto.identity import KeyHistory
from hn.vault import identities, presence, serving
from hn.vault.home import Home

log = logging.getLogger("hn.backup")

MAX_CHAIN = 1000
# What a restore brings over from the folder it replaces:
# - what every backup leaves out (snapshot.EXCLUDED_TOP, EXCLUDED_FILES) and the folder
#   holds: this vault's backups and their record, the backups it keeps for friends (run/
#   and the change-detection cache describe the old tree only);
# - the node state and fork evidence, which backups hold too, but older. The database
#   lands beside the restored one (swap keeps it as node.sqlite3.before-restore) and the
#   node state absorbs it when next opened, so no high-water mark or seen nonce goes
#   back; the evidence files merge one by one.
NODE_STATE = "sync/node.sqlite3"
KEPT = ("backups", "hosted", "sync/backups.json", NODE_STATE, "sync/forks")


class Source(Protocol):
    def header(self, backup_id: str) -> dict[str, Any]: ...

    def payload(self, header: dict[str, Any]) -> contextlib.AbstractContextManager[Any]: ...


class FileSource:
    """Header files ``<id>.backup.json`` with their payloads beside them in one folder.

    The top backup may be a header file under any name (``first_path``): its payload is
    the one named after that file, the same file the quick check (``verify_quick``)
    hashes, so every check and the restore read one payload.
    """

    def __init__(self, folder: Path, first: dict[str, Any] | None = None, first_path: Path | None = None) -> None:
        self.folder = folder
        # A header the caller has parsed already (a 20k-entry one takes ~0.1 s to parse).
        self.first = first
        self.paths: dict[str, Path] = {}  # a header read from another name than <id>.backup.json
        if first is not None and first_path is not None:
            self.paths[first["id"]] = first_path

    def header(self, backup_id: str) -> dict[str, Any]:
        if self.first is not None and self.first.get("id") == backup_id:
            header, self.first = self.first, None
            return header
        header = read_header_file(self.folder / f"{backup_id}{HEADER_SUFFIX}")
        if header.get("id") != backup_id:
            raise VerificationError(f"{backup_id}{HEADER_SUFFIX} holds another backup")
        return header

    def payload_path(self, header: dict[str, Any]) -> Path:
        return payload_path_for(self.paths.get(header["id"], self.folder / f"{header['id']}{HEADER_SUFFIX}"))

    @contextlib.contextmanager
    def payload(self, header: dict[str, Any]) -> Iterator[Any]:
        path = self.payload_path(header)
        require_payload(path)
        with open(path, "rb") as handle:
            yield handle


def check_owner(keys_home: Home, header: dict[str, Any], expected_owner: str | None) -> KeyHistory:
    """Verify a header's signature; the owner must be an own identity unless one is named."""
    owner = header.get("owner")
    pinned = identities.known_history(keys_home, owner) if isinstance(owner, str) and owner.startswith("did:hn:") else None
    history = proto.verify_header(header, pinned, expected_owner)
    if expected_owner is None:
        own = {identities.load(keys_home, a).did for a in identities.own_aliases(keys_home)}
        if header["owner"] not in own:
            raise VerificationError(
                f"the backup is signed by {header['owner']}, which is not an identity of this vault "
                "(pass --owner DID to accept someone else's backup)")
    return history


def load_chain(source: Source, top: dict[str, Any], keys_home: Home, expected_owner: str | None,
               top_checked: bool = False) -> list[dict[str, Any]]:
    """The verified chain, oldest (the full backup) first.

    ``top_checked``: the caller has just passed ``top`` through ``check_owner`` itself.
    """
    if not top_checked:
        check_owner(keys_home, top, expected_owner)
    chain = [top]
    while chain[-1]["scope"] == "delta":
        if len(chain) >= MAX_CHAIN:
            raise VerificationError(f"delta chain longer than {MAX_CHAIN} backups")
        try:
            base = source.header(chain[-1]["base_backup"])
        except HnError as exc:
            exc.args = (f"backup {chain[-1]['id']} is a delta on {chain[-1]['base_backup']}, which is needed "
                        f"to restore it and cannot be read: {exc.message}",)
            raise
        check_owner(keys_home, base, top["owner"])
        if base["created_at"] > chain[-1]["created_at"]:
            raise VerificationError(f"base backup {base['id']} is newer than the delta that names it")
        chain.append(base)
    return list(reversed(chain))


def verify_quick(header: dict[str, Any], payload: Path, keys_home: Home, expected_owner: str | None,
                 *, digest: bool = True) -> dict[str, Any]:
    """Signature, manifest shape and Merkle root, payload size and digest; no decryption.

    ``digest=False``: the payload's size only, for a caller about to decrypt it, which
    checks the digest as it reads (verify --deep would otherwise read it twice).
    """
    history = check_owner(keys_home, header, expected_owner)
    require_payload(payload)
    with open(payload, "rb") as handle:
        verify_payload_digest(header, handle, digest=digest)
    return {"signature": "ok", "signer": header["owner"], "key_seq": header["key_seq"],
            "owner_keys": len(history.keys), "manifest": "ok", "merkle_root": header["merkle_root"],
            "payload_digest": header["payload"]["digest"], "entries": len(header["entries"])}


@dataclass
class Outcome:
    id: str
    chain: list[str]
    files: int
    bytes: int
    merkle_root: str
    target: str | None
    recovered: str | None = None
    kept: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "chain": self.chain, "files": self.files, "bytes": self.bytes,
                "merkle_root": self.merkle_root, "restored_into": self.target, "ok": True,
                "recovered_swap": self.recovered, "kept": self.kept}


def _hold(target: Path) -> int:
    """The vault's serve lock, held for the restore: no node starts on it meanwhile. A node
    already serving it is named, with why a restore must wait for it to stop."""
    try:
        return serving.hold(target.absolute())
    except InputError:
        node = serving.served(target)
        if node is None:
            raise
        raise InputError(f"{node}; stop it before restoring over its vault (it would go on with the old one)") from None


def _check_target(target: Path, owner: str, force: bool) -> None:
    """Refuse a folder that is neither empty nor a vault (always), and a vault that belongs
    to someone else (unless forced): the swap replaces the whole folder."""
    if not target.is_dir():
        return  # missing (made by the restore), or not a folder (refused by swap.prepare)
    home = Home(target)
    if not home.exists:
        try:
            with os.scandir(target) as entries:
                occupied = any(True for _ in entries)
        except OSError as exc:
            raise cannot(f"cannot restore into {target}", exc) from exc
        if occupied:
            raise InputError(f"{target} is not empty and holds no vault; a restore replaces the whole folder, "
                             "so give an empty or new folder, or an existing vault")
        return
    if force:
        return
    dids = set()
    for alias in identities.own_aliases(home):
        try:
            dids.add(identities.load(home, alias).did)
        except Exception:  # an unreadable identity is not a reason to keep refusing
            continue
    if dids and owner not in dids:
        raise InputError(f"{target} holds another identity ({', '.join(sorted(dids))}); pass --force to replace it")


def restore(
    source: Source,
    backup_id: str,
    keys_home: Home,
    into: Path | None,
    *,
    expected_owner: str | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    top_checked: bool = False,
) -> Outcome:
    """Restore ``backup_id`` (and its bases) into ``into``; with ``into`` None only verify deeply.

    ``top_checked``: the source's header for ``backup_id`` has passed ``check_owner``
    already (``verify_quick`` does that), so it is not checked twice.
    """
    if into is None:
        return _restore(source, backup_id, keys_home, None, expected_owner, force, progress, on_total, top_checked)
    # One restore into a folder at a time, and no node starting on the vault meanwhile.
    with swap.guard(into), contextlib.ExitStack() as held:
        if Home(into).exists:
            held.callback(serving.release, _hold(into))
        return _restore(source, backup_id, keys_home, into, expected_owner, force, progress, on_total, top_checked)


def _restore(source: Source, backup_id: str, keys_home: Home, into: Path | None, expected_owner: str | None,
             force: bool, progress: Callable[[int], None] | None, on_total: Callable[[int], None] | None,
             top_checked: bool) -> Outcome:
    recovered = swap.recover(into) if into is not None else None
    top = source.header(backup_id)
    chain = load_chain(source, top, keys_home, expected_owner, top_checked)
    keys = [recipient_key(keys_home, h) for h in chain]
    final = {e["path"]: e for e in top["entries"]}
    if on_total:
        on_total(sum(e["size"] for h in chain for e in h["entries"] if e["stored"]))
    staging = None
    kept: list[str] = []
    if into is not None:
        _check_target(into, top["owner"], force)
        staging = swap.prepare(into)
    extractor = Extractor(staging, final, progress)
    try:
        for header, key in zip(chain, keys):
            with source.payload(header) as handle, open_archive(header, key, handle) as archive:
                extractor.run(header, archive)
        extractor.finish()
        extractor.check_complete()
        if into is not None and staging is not None:
            # Folders the vault expects even when empty (cache/ is not backed up).
            Home(staging).ensure()
            # Friends have seen presences signed after this backup: the restored vault signs
            # a new one, above them, at its next chance.
            presence.mark_restored(Home(staging), top["id"])
            _checkpoint(into / NODE_STATE)
            kept = swap.commit(into, staging, {"id": top["id"], "merkle_root": top["merkle_root"]},
                               _kept_from_old(final))
            staging = None
    finally:
        extractor.abandon()
        if staging is not None:
            swap.abandon(staging)
    return Outcome(top["id"], [h["id"] for h in chain], len(final), sum(e["size"] for e in final.values()),
                   top["merkle_root"], str(into.absolute()) if into is not None else None, recovered, kept)


def _checkpoint(db_path: Path) -> None:
    """Fold the replaced vault's SQLite log into its node database, which moves alone."""
    if not db_path.is_file():
        return
    try:
        db = sqlite3.connect(db_path, timeout=5)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
    except sqlite3.Error as exc:  # what the log held is lost, the rest is still absorbed
        log.warning("backup.restore.node_state", extra={"hn": {"path": str(db_path), "error": str(exc)}})


def _kept_from_old(final: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """What a restore keeps from the vault it replaces: what no backup holds (this vault's
    own backups and their records, the backups it keeps for friends), and the federation
    cache when the backup left it out."""
    if any(path.startswith("cache/") for path in final):
        return KEPT
    return (*KEPT, "cache")
