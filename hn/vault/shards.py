"""Sharing: seal an artefact to a contact (shard@1) and open shards addressed to us."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from hn.errors import DiskError, InputError, NotFound
from hn.proto import shard as shard_proto
from hn.proto import timefmt
from hn.proto.canonical import b64d, is_hex_digest
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


MIN_PREFIX = 6


def _mirrored(home: Home, prefix: str) -> dict[str, list[tuple[str, Path]]]:
    """Shard files mirrored from friends' nodes whose id starts with ``prefix``: id ->
    [(the friend's DID, the file)], friends in folder order."""
    out: dict[str, list[tuple[str, Path]]] = {}
    mirror = home.path("cache", "federation")
    if not mirror.is_dir():
        return out
    for peer in sorted(mirror.iterdir()):
        folder = peer / "artifacts" / "shard"
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):  # temp files of a mirror under way are not ids
            if is_hex_digest(path.name) and path.name.startswith(prefix) and path.is_file():
                out.setdefault(path.name, []).append((f"did:hn:{peer.name}", path))
    return out


def find_shard(home: Home, shard_id: str) -> Path:
    """A shard file, by its id or a prefix of at least 6 characters: our own store, or
    mirrored from a friend's node. A shard received before has a catalogue entry but its
    file stays in the mirror it came from. A prefix that matches more than one shard is
    refused, naming them; so is a shard whose file is nowhere any more."""
    prefix = shard_id.strip().lower()
    catalog = load_catalog(home)
    own = {i for i, e in catalog.entries.items() if e.get("kind") == "shard" and i.startswith(prefix)}
    if prefix in own:
        own = {prefix}  # a whole id never counts as a prefix of another
    elif len(prefix) < MIN_PREFIX:
        raise NotFound(f"no shard with id {prefix!r} (give at least {MIN_PREFIX} characters)")
    mirrored = _mirrored(home, prefix)
    if prefix in own or prefix in mirrored:
        mirrored = {k: v for k, v in mirrored.items() if k == prefix}
    ids = sorted(own | set(mirrored))
    if not ids:
        raise NotFound(f"no shard with id {prefix!r} (mirror your friends' nodes with "
                       "`hn mcp federate refresh --mirror`)")
    if len(ids) > 1:
        def where(i: str) -> str:
            places = (["this vault"] if i in own else []) + [f"mirror of {did}" for did, _ in mirrored.get(i, [])]
            return f"{i} ({', '.join(places)})"
        shown = "; ".join(where(i) for i in ids[:10]) + ("; …" if len(ids) > 10 else "")
        raise InputError(f"shard id prefix {prefix!r} is ambiguous: it matches {len(ids)} shards: {shown}; "
                         "give more characters of the id")
    found = ids[0]
    path = shard_path(home, found)
    if path.is_file():
        return path
    if found in mirrored:
        return mirrored[found][0][1]
    raise NotFound(f"shard {found} is in this vault's catalogue, but its file is neither in shards/ nor in a "
                   "friend's mirror any more: mirror the sender's node again (`hn mcp federate refresh "
                   "--mirror`), or give the path of the shard file")


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
