"""Artefacts, shards, the catalogue derived from the event log, and the local index.

The event log is the record of truth. ``personal/catalog.json`` is a cache of the state
the log describes (rebuilt by replay whenever the log has moved past it). Artefact bytes
live under their BLAKE3 address, exactly as added.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

import blake3

from hn.errors import DiskError, InputError, NotFound, VaultCorrupt, cannot, file_kind, storage_failure
from hn.proto import merkle, timefmt
from hn.proto.canonical import canonical, is_hex_digest, loads_canonical
from hn.vault import atomic, leftovers
from hn.vault.home import Home

CATALOG = ("personal", "catalog.json")
CATALOG_MAX_BYTES = 1 << 30
READ_BLOCK = 1 << 20
ADD_BATCH = 5000
log = logging.getLogger("hn.vault")


def object_path(home: Home, digest: str) -> Path:
    return home.path("personal", "objects", digest[:2], digest)


def shard_path(home: Home, shard_id: str) -> Path:
    return home.path("shards", shard_id[:2], f"{shard_id}.shard")


def hash_file(path: Path) -> tuple[str, int]:
    hasher = blake3.blake3()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(READ_BLOCK):
            hasher.update(block)
            size += len(block)
    return hasher.hexdigest(), size


# -- catalogue ------------------------------------------------------------------------
@dataclass
class Catalog:
    head_seq: int
    head_hash: str
    entries: dict[str, dict[str, Any]]

    def index_entries(self) -> list[dict[str, Any]]:
        """Published artefacts and outgoing shards, ordered by id (UTF-8 byte order)."""
        out = [index_entry(e) for e in self.entries.values() if e.get("published")]
        out.sort(key=lambda e: e["id"].encode("utf-8"))
        return out

    def index_cursor(self) -> int:
        """Event seq of the newest change to the index (0 when it never changed)."""
        return max((e.get("index_seq", 0) for e in self.entries.values()), default=0)


def index_entry(entry: dict[str, Any]) -> dict[str, Any]:
    kind = entry["kind"]
    metadata: dict[str, Any] = {}
    if kind == "doc":
        metadata = {"name": entry.get("name", ""), "media_type": entry.get("media_type", "")}
    elif kind == "shard":
        metadata = {"recipient": entry.get("recipient", "")}
    return {
        "type": kind,
        "id": entry["id"],
        "path": f"{kind}/{entry['id']}",
        "digest": entry["digest"],
        "size": entry["size"],
        "metadata": metadata,
    }


def index_root(entries: list[dict[str, Any]]) -> str:
    return merkle.root([bytes.fromhex(e["digest"]) for e in entries]).hex()


def apply_event(entries: dict[str, dict[str, Any]], event: dict[str, Any]) -> list[str]:
    """Apply one event to the catalogue entries; returns the ids of the entries it changed."""
    kind = event.get("kind")
    data = event.get("data") or {}
    seq = event.get("seq", 0)
    touched: list[str] = []
    if kind == "doc.add":
        for item in data.get("items", []):
            entry = dict(item, kind="doc")
            old = entries.get(item["id"])
            if old is not None:
                entry["published"] = old.get("published", False) or item.get("published", False)
                entry["index_seq"] = old.get("index_seq", 0)
            if entry.get("published") and not (old and old.get("published")):
                entry["index_seq"] = seq
            entries[item["id"]] = entry
            touched.append(item["id"])
    elif kind in ("doc.publish", "doc.unpublish"):
        for doc_id in data.get("ids", []):
            if doc_id in entries:
                entries[doc_id]["published"] = kind == "doc.publish"
                entries[doc_id]["index_seq"] = seq
                touched.append(doc_id)
    elif kind == "shard.create":
        entries[data["id"]] = dict(data, kind="shard", direction="out", published=True, index_seq=seq)
        touched.append(data["id"])
    elif kind == "shard.receive":
        if data["id"] not in entries:
            entries[data["id"]] = dict(data, kind="shard", direction="in", published=False)
            touched.append(data["id"])
    return touched


def catch_up(home: Home, catalog: Catalog, head_seq: int, head_hash: str) -> list[str] | None:
    """Apply the events after ``catalog``'s head, up to ``head_seq``, to it in place.

    Returns the ids they changed, or None when the log does not continue from the
    catalogue's head (rewritten underneath it) or does not end at ``head_hash``.
    """
    from hn.proto.events import event_hash

    if head_seq < catalog.head_seq:
        return None
    if catalog.head_seq:
        base = home.path("events", f"{catalog.head_seq:012d}.json")
        if not base.exists() or event_hash(home.read_event(base)) != catalog.head_hash:
            return None
    touched: list[str] = []
    for seq in range(catalog.head_seq + 1, head_seq + 1):
        event = home.read_event(home.path("events", f"{seq:012d}.json"))
        touched += apply_event(catalog.entries, event)
        catalog.head_seq, catalog.head_hash = seq, event_hash(event)
    return touched if catalog.head_hash == head_hash else None


def replay(home: Home, upto: int | None = None) -> Catalog:
    entries: dict[str, dict[str, Any]] = {}
    seq, head = 0, "0" * 64
    from hn.proto.events import event_hash

    for event in home.events():
        if upto is not None and event.get("seq", 0) > upto:
            break
        apply_event(entries, event)
        seq, head = event["seq"], event_hash(event)
    return Catalog(seq, head, entries)


def _whole(value: Any) -> TypeGuard[int]:
    return type(value) is int and value >= 0


def _entry_problem(key: str, entry: Any) -> str | None:
    """What is wrong with one cached catalogue entry, for the fields readers rely on."""
    if not isinstance(entry, dict):
        return "not an object"
    if entry.get("id") != key or not is_hex_digest(key):
        return "id does not match its key"
    kind = entry.get("kind")
    if kind not in ("doc", "shard"):
        return "kind is neither doc nor shard"
    if not is_hex_digest(entry.get("digest")):
        return "digest missing or not a digest"
    if not _whole(entry.get("size")):
        return "size missing or not a whole number"
    if type(entry.get("published", False)) is not bool or not _whole(entry.get("index_seq", 0)):
        return "published or index_seq of the wrong type"
    texts = ("name", "media_type") if kind == "doc" else ("direction", "recipient", "sender")
    if any(not isinstance(entry.get(k, ""), str) for k in texts):
        return f"{'/'.join(texts)} of the wrong type"
    return None


def parse_catalog(raw: bytes) -> Catalog:
    """The cache file's content, with the shape every reader relies on; ValueError saying
    what is wrong otherwise."""
    try:
        # Our own cache file, not network input: it grows with the vault (about 350 B per entry).
        doc = loads_canonical(raw, max_bytes=CATALOG_MAX_BYTES)
    except InputError as exc:
        raise ValueError(exc.message) from exc
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    head_seq, head_hash, entries = doc.get("head_seq"), doc.get("head_hash"), doc.get("entries")
    if not _whole(head_seq) or not is_hex_digest(head_hash) or not isinstance(entries, dict):
        raise ValueError("head_seq, head_hash or entries missing or of the wrong type")
    for key, entry in entries.items():
        problem = _entry_problem(key, entry)
        if problem is not None:
            raise ValueError(f"entry {key[:16]}: {problem}")
    return Catalog(head_seq, str(head_hash), entries)


def read_cached_catalog(home: Home) -> tuple[Catalog | None, str | None]:
    """(the cached catalogue, None), (None, what is wrong with it), or (None, None) if there is none."""
    path = home.path(*CATALOG)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if (failure := storage_failure(exc)) is not None:
            raise failure from exc
        return None, exc.strerror or str(exc)  # a folder in its place, say
    try:
        return parse_catalog(raw), None
    except ValueError as exc:
        return None, str(exc)


def load_catalog(home: Home, persist: bool = False) -> Catalog:
    """The catalogue at the log's head: the cache, caught up with newer events if needed.

    Only writers (who hold the vault lock) pass ``persist`` to store the caught-up cache.
    A damaged cache is rebuilt from the log and saved by any caller (see _rebuilt).
    """
    head_seq, head_hash = home.head()
    cached, damage = read_cached_catalog(home)
    if cached is not None and cached.head_seq == head_seq and cached.head_hash == head_hash:
        return cached
    if cached is not None and 0 < cached.head_seq < head_seq and catch_up(home, cached, head_seq, head_hash) is not None:
        if persist:
            save_catalog(home, cached)
        return cached
    catalog = replay(home)
    if damage is not None:
        _rebuilt(home, catalog, damage)
    elif persist:
        save_catalog(home, catalog)
    return catalog


def _rebuilt(home: Home, catalog: Catalog, damage: str) -> None:
    """Save a catalogue replayed in place of a damaged cache, and say so.

    Readers save it too, without the vault lock (a reader may be called by a writer that
    holds it): the file is replaced atomically by the catalogue of a real head of the log,
    and a cache behind the log is caught up by the next load, so a race with a writer
    costs one catch-up, never a wrong answer.
    """
    name = "/".join(CATALOG)
    say = f"{name} was damaged ({damage}); rebuilt from the event log"
    try:
        save_catalog(home, catalog)
    except DiskError as exc:
        say += f", but it could not be saved: {exc.message}"
    log.warning("catalog.rebuilt", extra={"hn": {"path": name, "damage": damage, "say": say}})


def save_catalog(home: Home, catalog: Catalog) -> None:
    body = {"head_seq": catalog.head_seq, "head_hash": catalog.head_hash, "entries": catalog.entries}
    atomic.write_bytes(home.path(*CATALOG), canonical(body))


def resolve_id(catalog: Catalog, prefix: str, kind: str | None = None) -> dict[str, Any]:
    """Find an entry by its id or a unique prefix of at least 6 characters."""
    prefix = prefix.strip().lower()
    if prefix in catalog.entries and (kind is None or catalog.entries[prefix]["kind"] == kind):
        return catalog.entries[prefix]
    if len(prefix) < 6:
        raise NotFound(f"no {kind or 'artefact'} with id {prefix!r} (give at least 6 characters)")
    hits = [e for i, e in catalog.entries.items() if i.startswith(prefix) and (kind is None or e["kind"] == kind)]
    if not hits:
        raise NotFound(f"no {kind or 'artefact'} with id {prefix!r}")
    if len(hits) > 1:
        raise InputError(f"id prefix {prefix!r} is ambiguous ({len(hits)} matches)")
    return hits[0]


# -- adding artefacts -------------------------------------------------------------------
@dataclass
class Skipped:
    """An entry of a folder being added that is not a regular file, and what it is."""

    path: Path
    reason: str


@dataclass
class Inputs:
    files: list[Path]
    skipped: list[Skipped]


def expand_inputs(paths: Iterable[Path]) -> Inputs:
    """The regular files named, and those found in the folders named, each once.

    A path named on the command line is followed if it is a symbolic link (as cp does);
    one named that is not a regular file or folder (a FIFO, a device) is an error. Inside
    folders, symbolic links and every other non-regular entry are skipped and listed:
    following links there could add files from anywhere on the machine. A file named
    twice (or named and found in a folder named too) is taken once.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[tuple[int, int]] = set()

    def take(path: Path, st: os.stat_result) -> None:
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            files.append(path)

    def walk(folder: Path) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if (failure := storage_failure(exc)) is not None:
                raise failure from exc
            skipped.append(Skipped(folder, f"a folder that cannot be read: {exc.strerror or exc}"))
            return
        for entry in entries:
            path = folder / entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                walk(path)
            elif stat.S_ISREG(st.st_mode):
                take(path, st)
            else:
                skipped.append(Skipped(path, file_kind(st.st_mode)))

    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            broken = path.is_symlink()
            raise InputError(f"{path}: {'a symbolic link to a missing file' if broken else 'no such file'}") from None
        except OSError as exc:
            raise cannot(f"cannot read {path}", exc) from exc
        if stat.S_ISDIR(st.st_mode):
            walk(path)
        elif stat.S_ISREG(st.st_mode):
            take(path, st)
        else:
            raise InputError(f"{path}: not a regular file ({file_kind(st.st_mode)}); nothing was added")
    return Inputs(files, skipped)


def _add_temp(name: str) -> bool:
    return name.startswith(leftovers.ADD)


def leftover_temps(home: Home) -> list[Path]:
    """Temp files of adds that were interrupted (killed, or the machine stopped); nothing is removed."""
    return [p for p, _ in leftovers.found(home.path("personal", "objects"), _add_temp, remove=False)]


def sweep_temps(home: Home) -> list[Path]:
    """Remove the temp files of interrupted adds; the ones of adds still running stay (as
    does one that cannot be removed: `hn vault verify` names it)."""
    return [p for p, _ in leftovers.found(home.path("personal", "objects"), _add_temp, remove=True)]


def store_file(home: Home, source: Path) -> tuple[str, int]:
    """Copy ``source`` into the object store under its digest (no fsync; see add_files).

    The bytes go to a locked temp file first. Whatever stops the copy (an error, Ctrl-C)
    removes it; a kill -9 leaves it behind for sweep_temps.
    """
    folder = home.path("personal", "objects")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = leftovers.new_temp(folder, leftovers.ADD)
    except OSError as exc:
        raise DiskError(f"could not store {source}: {exc.strerror or exc}; nothing was added") from exc
    hasher = blake3.blake3()
    size = 0
    try:
        # The rename happens before the descriptor closes: the lock covers the temp file's
        # whole life, so no sweeper can take it between the last write and the rename.
        with os.fdopen(fd, "wb") as out:
            with _open_source(source) as src:
                while block := _read(src, source):
                    out.write(block)
                    hasher.update(block)
                    size += len(block)
            out.flush()
            digest = hasher.hexdigest()
            target = object_path(home, digest)
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, target)
        return digest, size
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DiskError(f"could not store {source}: {exc.strerror or exc}; nothing was added") from exc
        raise


def _open_source(source: Path) -> BinaryIO:
    """``source`` open for reading, if it is (still) a regular file: a FIFO put in its place
    since expand_inputs looked is refused, not waited on."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise cannot(f"could not read {source}", exc) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{source}: not a regular file ({file_kind(mode)}); nothing was added")
    return os.fdopen(fd, "rb")


def _read(src: BinaryIO, source: Path) -> bytes:
    try:
        return src.read(READ_BLOCK)
    except OSError as exc:
        raise cannot(f"could not read {source}", exc) from exc


def text_name(name: str) -> str:
    """A file name as text the catalogue can hold: bytes of it that are not UTF-8 (which
    Python keeps as lone surrogates, and no JSON document can carry) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class Added:
    """One file of an add and the document it is in the vault."""

    path: Path
    entry: dict[str, Any]  # the catalogue entry after the add
    new: bool  # False: the same bytes were in the vault already, or came from an earlier file of this add
    same_as: Path | None = None  # that earlier file of this add, if it was one


def add(
    home: Home,
    keys: Any,
    files: list[Path],
    publish: bool,
    progress: Callable[[int], None] | None = None,
) -> list[Added]:
    """Store ``files`` (from expand_inputs) and record the new documents, one per content.

    A document is its bytes: content already in the vault keeps the name it has, and a
    second file of the same bytes in one add does not rename the first. ``publish``
    publishes those already there too.
    """
    if not files:
        raise InputError("no files to add")
    home.check_head(keys)  # refuse before storing bytes that no event could name
    sweep_temps(home)
    stored: list[tuple[Path, str, int]] = []
    for path in files:
        digest, size = store_file(home, path)
        stored.append((path, digest, size))
        if progress:
            progress(1)
    # One sync for the whole batch: every object is durable before the event names it.
    try:
        atomic.sync_tree(home.path("personal", "objects"))
    except OSError as exc:
        raise DiskError(f"could not flush new objects: {exc.strerror or exc}; nothing was added") from exc
    now = timefmt.now_iso()
    with home.lock():
        before = load_catalog(home, persist=True)
        first: dict[str, Path] = {}  # digest -> the file of this add that brought it
        items: list[dict[str, Any]] = []
        to_publish: list[str] = []
        for path, digest, size in stored:
            if digest in first:
                continue
            first[digest] = path
            old = before.entries.get(digest)
            if old is None:
                items.append({
                    "id": digest,
                    "digest": digest,
                    "size": size,
                    "name": text_name(path.name),
                    "media_type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                    "published": publish,
                    "added_at": now,
                })
            elif publish and not old.get("published"):
                to_publish.append(digest)
        # Batches keep every event far below the log reader's size cap, whatever the count.
        for start in range(0, len(items), ADD_BATCH):
            home.append_event(keys, "doc.add", {"items": items[start:start + ADD_BATCH]})
        if to_publish:
            home.append_event(keys, "doc.publish", {"ids": to_publish})
        catalog = load_catalog(home, persist=True)
    out: list[Added] = []
    for path, digest, _ in stored:
        new = digest not in before.entries and first[digest] == path
        earlier = first[digest] if first[digest] != path else None
        out.append(Added(path, catalog.entries[digest], new, earlier))
    return out


def add_files(
    home: Home,
    keys: Any,
    paths: list[Path],
    publish: bool,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """``add`` of the files and folders ``paths``: the catalogue entry of each file."""
    return [a.entry for a in add(home, keys, expand_inputs(paths).files, publish, progress)]


def set_published(
    home: Home, keys: Any, ids: list[str], published: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Publish or unpublish documents (ids or prefixes; one naming the same document twice
    counts once): their catalogue entries after it, and the ids of those that changed.

    Only a change is recorded. A document that is already so is left alone: unpublishing
    one that was never published would otherwise put its id in the index as a tombstone,
    telling every peer that this vault holds that content.
    """
    catalog = load_catalog(home)
    wanted = list(dict.fromkeys(resolve_id(catalog, i, "doc")["id"] for i in ids))
    with home.lock():
        catalog = load_catalog(home, persist=True)
        changed = [i for i in wanted if bool(catalog.entries[i].get("published")) != published]
        if changed:
            home.append_event(keys, "doc.publish" if published else "doc.unpublish", {"ids": changed})
            catalog = load_catalog(home, persist=True)
    return [catalog.entries[i] for i in wanted], changed


def read_object(home: Home, entry: dict[str, Any]) -> Path:
    path = object_path(home, entry["digest"]) if entry["kind"] == "doc" else shard_path(home, entry["id"])
    if not path.exists():
        raise VaultCorrupt(f"artefact {entry['id']} is missing from the store")
    return path


def copy_out(source: Path, target: Path) -> None:
    with open(source, "rb") as src, atomic.atomic_writer(target) as out:
        shutil.copyfileobj(src, out, READ_BLOCK)


def check_digest_name(value: str) -> str:
    if not is_hex_digest(value):
        raise InputError(f"not an artefact id: {value!r}")
    return value
