"""Sharing: seal an artefact to a contact (shard@1) and open shards addressed to us."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from hn.errors import DiskError, InputError, NotFound
from hn.proto import shard as shard_proto
from hn.proto import timefmt
from hn.proto.canonical import b64d
from hn.vault import atomic, identities, leftovers
from hn.vault.home import Home
from hn.vault.identities import Identity
from hn.vault.store import hash_file, load_catalog, read_object, resolve_id, shard_path


def share(home: Home, me: Identity, doc_prefix: str, to_did: str) -> dict[str, Any]:
    recipient = identities.require_history(home, to_did)
    identities.check_log(home, me.keys)  # refuse before sealing a shard that no event could name
    catalog = load_catalog(home)
    entry = resolve_id(catalog, doc_prefix, "doc")
    source = read_object(home, entry)
    meta = {
        "name": entry.get("name", ""),
        "media_type": entry.get("media_type", ""),
        "size": entry["size"],
        "digest": entry["digest"],
    }
    folder = home.path("shards")
    folder.mkdir(parents=True, exist_ok=True)
    # What shares killed mid-seal left; a temp a running share holds stays.
    leftovers.found(folder, lambda name: name.startswith(leftovers.SEAL), remove=True)
    fd, tmp = leftovers.new_temp(folder, leftovers.SEAL)  # held until the shard has its name
    try:
        # Renamed before the descriptor closes: the lock covers the temp file's whole life.
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shard_proto.seal(
                me.keys, recipient.did, recipient.current.seq, recipient.current.hpke_public_key,
                meta, src, out, timefmt.now_iso(),
            )
            out.flush()
            os.fsync(out.fileno())
            shard_id, size = hash_file(tmp)
            target = shard_path(home, shard_id)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
    except BaseException as exc:  # Ctrl-C included: no half-written shard stays behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DiskError(f"could not write the shard: {exc.strerror or exc}; nothing changed") from exc
        raise
    with contextlib.suppress(OSError):  # only the rename's durability is delayed
        atomic.fsync_dir(target.parent)
    data = {"id": shard_id, "digest": shard_id, "size": size, "doc_id": entry["id"], "recipient": recipient.did}
    with home.lock():
        try:
            home.append_event(me.keys, "shard.create", data)
        except BaseException:
            # No event names this shard: remove it rather than leave an orphan behind.
            target.unlink(missing_ok=True)
            raise
        load_catalog(home, persist=True)
    return data


def find_shard(home: Home, shard_id: str) -> Path:
    """A shard file: our own store, or mirrored from a friend's node."""
    shard_id = shard_id.strip().lower()
    catalog = load_catalog(home)
    try:
        entry = resolve_id(catalog, shard_id, "shard")
        return shard_path(home, entry["id"])
    except NotFound:
        pass
    mirror = home.path("cache", "federation")
    if mirror.is_dir():
        for peer in sorted(mirror.iterdir()):
            folder = peer / "artifacts" / "shard"
            if not folder.is_dir():
                continue
            hits = sorted(p for p in folder.iterdir() if p.name.startswith(shard_id) and len(shard_id) >= 6)
            if len(hits) == 1:
                return hits[0]
    raise NotFound(f"no shard with id {shard_id!r} (mirror your friends' nodes with `hn mcp federate refresh --mirror`)")


def open_shard(home: Home, me: Identity, source: Path, out: Path) -> dict[str, Any]:
    if out.exists() and out.is_dir():
        raise InputError(f"{out} is a folder; give a file name")
    with open(source, "rb") as handle:
        header, _ = shard_proto.read_header(handle)
    sender = identities.require_history(home, header["signer"])
    if header["recipient"] != me.did:
        raise InputError(f"this shard is addressed to {header['recipient']}, not to you ({me.did})")
    b64d(header["enc"], length=32)
    shard_id, size = hash_file(source)
    with open(source, "rb") as handle, atomic.atomic_writer(out) as dst:
        meta = shard_proto.open_shard(handle, sender, me.keys, dst)
    data = {"id": shard_id, "digest": shard_id, "size": size, "sender": sender.did, "doc_digest": meta["digest"]}
    with home.lock():
        catalog = load_catalog(home)
        if shard_id not in catalog.entries:
            home.append_event(me.keys, "shard.receive", data)
            load_catalog(home, persist=True)
    return {**data, "name": meta.get("name", ""), "media_type": meta.get("media_type", ""),
            "bytes": meta["size"], "out": str(out)}
