"""Backups on this machine: the registry of what was created and pushed, and header files."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hn.backup import snapshot
from hn.backup.create import HEADER_SUFFIX, PAYLOAD_SUFFIX, Result, payload_path_for
from hn.errors import InputError, MalformedDocument, NotFound, TooLarge, file_kind
from hn.proto import backup as proto
from hn.proto.canonical import canonical, loads_strict
from hn.vault import atomic
from hn.vault.home import Home

MAX_RECORDS = 10_000


def default_dir(home: Home) -> Path:
    return home.path("backups")


def records(home: Home) -> list[dict[str, Any]]:
    try:
        raw = loads_strict(home.path(*snapshot.REGISTRY).read_bytes(), max_bytes=64 << 20)
    except (OSError, MalformedDocument):
        return []
    items = raw.get("backups") if isinstance(raw, dict) else None
    return [r for r in items if isinstance(r, dict) and proto.is_backup_id(r.get("id"))] if isinstance(items, list) else []


def _save(home: Home, items: list[dict[str, Any]]) -> None:
    # Stable by creation time: backups made within the same second keep the order they
    # were made in, so "latest" is the last one made.
    items = sorted(items, key=lambda r: str(r.get("created_at", "")))[-MAX_RECORDS:]
    atomic.write_bytes(home.path(*snapshot.REGISTRY), canonical({"version": 1, "backups": items}), mode=0o600)


def record_created(home: Home, result: Result) -> None:
    s = result.summary()
    entry = {k: s[k] for k in ("id", "scope", "base_backup", "created_at", "entries", "bytes", "payload_size",
                               "merkle_root", "recipient", "target", "header", "payload")}
    entry["pushed"] = []
    with home.lock():
        _save(home, [r for r in records(home) if r["id"] != entry["id"]] + [entry])


def record_pushed(home: Home, backup_id: str, url: str, target: str | None, at: str) -> None:
    with home.lock():
        items = records(home)
        for item in items:
            if item["id"] == backup_id:
                pushes = [p for p in item.get("pushed", []) if p.get("url") != url]
                item["pushed"] = pushes + [{"url": url, "target": target, "at": at}]
        _save(home, items)


def latest_pushed(home: Home, url: str) -> dict[str, Any]:
    """The newest local backup that reached the node at ``url``: the base a delta pushed
    there must build on, or the node could not restore the chain."""
    url = url.rstrip("/")
    hit = _latest_at(records(home), url)
    if hit is None:
        raise NotFound(f"no backup of this vault has reached {url} yet: push a full backup there first "
                       "(or name the base with --base)")
    return hit


def _latest_at(items: list[dict[str, Any]], url: str | None) -> dict[str, Any] | None:
    """The newest of ``items`` (oldest first) pushed to ``url``."""
    hits = [r for r in items if any(p.get("url") == url for p in r.get("pushed", []))]
    return hits[-1] if hits else None


def find(home: Home, backup_id: str) -> dict[str, Any]:
    items = records(home)
    if backup_id == "latest":
        if not items:
            raise NotFound("no backup has been created in this vault yet")
        return items[-1]
    hits = [r for r in items if r["id"].startswith(backup_id)] if len(backup_id) >= 6 else []
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise InputError(f"backup id prefix {backup_id!r} is ambiguous")
    path = default_dir(home) / f"{backup_id}{HEADER_SUFFIX}"
    if path.exists():
        return {"id": backup_id, "header": str(path), "payload": str(payload_path_for(path))}
    raise NotFound(f"no local backup {backup_id!r} (see `hn vault backup list`)")


def read_header_file(path: Path) -> dict[str, Any]:
    if path.name.endswith(PAYLOAD_SUFFIX):
        header = path.with_name(path.name[: -len(PAYLOAD_SUFFIX)] + HEADER_SUFFIX)
        raise InputError(f"{path} is a backup's payload; give its header, {header.name}, which sits beside it")
    fd = _open_header(path)
    try:
        raw = _read_capped(fd, path)
    finally:
        os.close(fd)
    try:
        return proto.parse_header(raw)
    except MalformedDocument as exc:
        raise MalformedDocument(f"{path} is not a backup header: {exc.message}") from exc


@contextlib.contextmanager
def holding_base(path: Path) -> Iterator[dict[str, Any]]:
    """A delta's base header, for change detection only: its id, owner and entry digests.

    Parsed without the signed-document checks, which cost more than the rest of a small
    delta on a large vault: the file is this vault's own, it only decides which files the
    delta stores, and every restore verifies the whole chain, signatures included.

    A shared lock on the header is held until the block ends: `prune` removes no backup
    whose header is held, so a delta being made keeps its base until it is recorded (from
    then on prune keeps the base as part of the delta's chain).
    """
    fd = _open_header(path)
    try:
        # Without flock on this filesystem no prune can take the lock to skip it either.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH)
        # A prune may have removed the header between the open and the lock.
        held = os.fstat(fd)
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            raise NotFound(f"backup header {path} was removed (by `hn vault backup prune`?) as this delta began; "
                           "name another base, or make a full backup")
        yield _parse_base(_read_capped(fd, path), path)
    finally:
        os.close(fd)


def _open_header(path: Path) -> int:
    # Non-blocking: a FIFO in a header's place is refused by _read_capped, not waited on.
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise NotFound(f"cannot read backup header {path}: {exc.strerror}") from exc


def _read_capped(fd: int, path: Path) -> bytes:
    """The header file open on ``fd``, if it is a regular file within the size a header may have."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a backup header: it is {file_kind(st.st_mode)}")
    if st.st_size > proto.MAX_HEADER:
        raise TooLarge(f"{path} is larger than {proto.MAX_HEADER} bytes, the most a backup header may hold")
    try:
        with os.fdopen(os.dup(fd), "rb") as file:
            # As much as the file holds, never more than the cap (a read sized by the cap
            # would allocate all of it first).
            raw = file.read(st.st_size)
    except OSError as exc:
        raise NotFound(f"cannot read backup header {path}: {exc.strerror}") from exc
    return raw


@contextlib.contextmanager
def _claimed(header: Path) -> Iterator[bool]:
    """False if a delta being made holds ``header`` as its base (holding_base). Otherwise
    True, with the header held exclusively until the block ends, so no delta takes it as
    its base meanwhile."""
    try:
        fd = os.open(header, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # no waiting on a FIFO
    except OSError:
        yield True  # no header (or none to open): nobody holds it
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:
            pass  # no flock on this filesystem: no delta can hold the header either
        yield True
    finally:
        os.close(fd)


def _parse_base(data: bytes, path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedDocument(f"{path} is not a backup@1 header: {exc}") from exc
    entries = raw.get("entries") if isinstance(raw, dict) else None
    if not (isinstance(raw, dict) and raw.get("type") == proto.BACKUP_TYPE and proto.is_backup_id(raw.get("id"))
            and isinstance(raw.get("owner"), str) and isinstance(entries, list)
            and all(isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("digest"), str)
                    for e in entries)):
        raise MalformedDocument(f"{path} is not a backup@1 header")
    return raw


def chain(items: list[dict[str, Any]], backup_id: str) -> list[str]:
    """Ids from ``backup_id`` down to its full backup, as far as the records know."""
    by_id = {r["id"]: r for r in items}
    out = [backup_id]
    while len(out) <= len(by_id):
        base = by_id.get(out[-1], {}).get("base_backup")
        if not base:
            break
        out.append(base)
    return out


def prune(home: Home, keep: int, *, dry_run: bool = False) -> dict[str, Any]:
    """Remove the files of all but the newest ``keep`` local backups.

    Kept besides: every backup a kept one builds on (so no kept delta loses its base), and
    the newest backup that reached each friend's node with its chain, since the next delta
    pushed there builds on it. A removed backup loses its header first (the header commits
    a backup, so a crash between the two leaves a payload that the next create into that
    folder sweeps), then its payload. Its record goes too, unless it was pushed: then the
    record stays, to say where it went, and `list` shows it as missing here. A backup that
    a delta being made holds as its base (holding_base) stays too, listed under ``in_use``.
    """
    if keep < 1:
        raise InputError("--keep must be at least 1: the newest backup is always kept")
    with home.lock():
        items = records(home)
        wanted: set[str] = set()
        tips = items[-keep:] + [hit for url in {p.get("url") for r in items for p in r.get("pushed", [])}
                                if (hit := _latest_at(items, url)) is not None]
        for tip in tips:
            wanted.update(chain(items, tip["id"]))
        removed: list[dict[str, Any]] = []
        failed: list[dict[str, str]] = []
        in_use: list[str] = []  # the base of a delta being made: kept, so that delta can be restored
        left: list[dict[str, Any]] = []
        for item in items:
            if item["id"] in wanted:
                left.append(item)
                continue
            # Only files by the names a create gives them: a damaged record removes nothing else.
            header, payload = Path(str(item.get("header") or "")), Path(str(item.get("payload") or ""))
            paths = [p for p in (header, payload)
                     if p.name in (f"{item['id']}{HEADER_SUFFIX}", f"{item['id']}{PAYLOAD_SUFFIX}")]
            with _claimed(header) if header in paths else contextlib.nullcontext(True) as free:
                if not free:
                    in_use.append(item["id"])
                    left.append(item)
                    continue
                freed = sum(p.stat().st_size for p in paths if p.is_file())
                if not dry_run:
                    try:
                        for path in paths:
                            if path.is_file():
                                path.unlink()
                    except OSError as exc:
                        failed.append({"id": item["id"], "error": f"cannot remove {path}: {exc.strerror or exc}"})
                        left.append(item)
                        continue
            removed.append({"id": item["id"], "scope": item.get("scope"), "created_at": item.get("created_at"),
                            "freed_bytes": freed, "record_kept": bool(item.get("pushed"))})
            if item.get("pushed"):
                left.append(item)
        if not dry_run and removed:
            _save(home, left)
    return {"kept": sorted((wanted | set(in_use)) & {r["id"] for r in items}), "in_use": in_use,
            "removed": removed, "failed": failed,
            "freed_bytes": sum(r["freed_bytes"] for r in removed), "dry_run": dry_run}
