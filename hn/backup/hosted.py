"""Backups a node holds for its friends: uploads, quota, retention (keep-last-N per owner).

Layout under the node's home: ``hosted/backups/<did tail>/<id>.backup.json`` and
``<id>.backup.payload`` once kept; ``<id>.pending.json`` and ``<id>.partial`` while an
upload is under way. The header is written last, after the whole payload's BLAKE3 equals
the signed ``payload.digest``: it is the commit point, and only committed backups are
listed or served. Retention keeps the newest N backups of each owner plus every backup
one of them names as its base (directly or through other deltas), so no kept chain breaks.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from hn.errors import Conflict, Forbidden, NotFound, QuotaExceeded, TooLarge, VerificationError
from hn.proto import backup as proto
from hn.proto.canonical import canonical
from hn.vault import atomic, policy
from hn.vault.home import Home
from hn.vault.identities import did_tail

HEADER = ".backup.json"
PAYLOAD = ".backup.payload"
PENDING = ".pending.json"
PARTIAL = ".partial"
# An upload untouched this long is abandoned: its files go, and stop counting to the quota.
STALE_UPLOAD = 7 * 86400.0
# A payload whose header is missing this long was left by a node stopped between the two
# steps of a commit (a commit takes them within milliseconds of each other).
ORPHAN_PAYLOAD = 3600.0


@dataclass(frozen=True)
class Limits:
    max_backup: int = 16 << 30
    quota: int = 64 << 30
    keep_last: int = 5
    max_header: int = 64 << 20

    @classmethod
    def from_settings(cls, settings: dict[str, Any], config: dict[str, Any]) -> Limits:
        """Node settings win over the ``[backup]`` table of config/node.toml."""
        table = config.get("backup") if isinstance(config.get("backup"), dict) else {}
        assert isinstance(table, dict)

        def pick(name: str, default: int) -> int:
            value = settings.get(f"backup_{name}", table.get(name, default))
            return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

        return cls(pick("max_backup", cls.max_backup), pick("quota", cls.quota), pick("keep_last", cls.keep_last),
                   pick("max_header", cls.max_header))


def _whole(value: str | None) -> int | None:
    """A policy's whole number, or None for a value `hn policy set` would have refused
    (edited into the file by hand): other scripts' digits, or more digits than any quota."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 19:
        return None
    return int(value)


class HostedStore:
    def __init__(self, home: Home, limits: Limits) -> None:
        self.home = home
        self.root = home.path("hosted", "backups")
        self.limits = limits

    def quota(self, owner: str) -> int:
        """Policy backup.quota_bytes as the owner of this node set it (for ``owner`` or for
        everyone), else the node's configured quota."""
        value = _whole(policy.explicit(self.home, "backup.quota_bytes", owner))
        return value if value is not None else self.limits.quota

    def keep_last(self, owner: str) -> int:
        """Policy backup.retention likewise, else the node's keep_last."""
        value = _whole(policy.explicit(self.home, "backup.retention", owner))
        return max(1, value) if value is not None else self.limits.keep_last

    def folder(self, owner: str) -> Path:
        return self.root / did_tail(owner)

    # -- reading ------------------------------------------------------------------
    def find(self, backup_id: str) -> Path:
        """The header path of a committed backup."""
        if not proto.is_backup_id(backup_id):
            raise NotFound(f"no backup {backup_id!r}")
        if self.root.is_dir():
            for owner in os.listdir(self.root):
                path = self.root / owner / f"{backup_id}{HEADER}"
                if path.exists():
                    return path
        raise NotFound(f"no backup {backup_id}")

    def payload_of(self, header_path: Path) -> Path:
        return header_path.with_name(header_path.name[: -len(HEADER)] + PAYLOAD)

    def listing(self, owner: str) -> list[dict[str, Any]]:
        folder = self.folder(owner)
        out = []
        order: dict[str, int] = {}
        if folder.is_dir():
            for path in folder.glob(f"*{HEADER}"):
                header = proto.parse_header(path.read_bytes())
                # Commit order breaks ties between backups made within the same second.
                order[header["id"]] = path.stat().st_mtime_ns
                out.append({"id": header["id"], "owner": header["owner"], "created_at": header["created_at"],
                            "scope": header["scope"], "base_backup": header["base_backup"],
                            "entries": len(header["entries"]), "payload_size": header["payload"]["size"],
                            "merkle_root": header["merkle_root"]})
        out.sort(key=lambda r: (r["created_at"], order[r["id"]], r["id"]))
        return out

    def used(self, owner: str) -> int:
        folder = self.folder(owner)
        if not folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

    # -- uploading ----------------------------------------------------------------
    def begin(self, raw: bytes, header: dict[str, Any], node_did: str) -> dict[str, Any]:
        """Open or resume an upload of a verified header; returns the status."""
        owner, backup_id = header["owner"], header["id"]
        if header["target"] is not None and header["target"] != node_did:
            raise Forbidden(f"backup {backup_id} is meant for {header['target']}, not this node")
        size = header["payload"]["size"]
        if size + len(raw) > self.limits.max_backup:
            raise TooLarge(f"backup of {size} bytes exceeds this node's limit of {self.limits.max_backup}")
        folder = self.folder(owner)
        if (folder / f"{backup_id}{HEADER}").exists():
            return self.status(owner, backup_id, complete=True)
        self.sweep(owner)
        partial = folder / f"{backup_id}{PARTIAL}"
        already = partial.stat().st_size if partial.exists() else 0
        quota = self.quota(owner)
        if self.used(owner) - already + size + len(raw) > quota:
            raise QuotaExceeded(f"storing {size} more bytes would exceed the quota of {quota} for {owner}")
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(folder / f"{backup_id}{PENDING}", raw, mode=0o600)
        if not partial.exists():
            atomic.write_bytes(partial, b"", mode=0o600)
        return self.status(owner, backup_id)

    def status(self, owner: str, backup_id: str, complete: bool = False) -> dict[str, Any]:
        folder = self.folder(owner)
        if complete or (folder / f"{backup_id}{HEADER}").exists():
            size = self.payload_of(folder / f"{backup_id}{HEADER}").stat().st_size
            return {"id": backup_id, "received": size, "complete": True}
        partial = folder / f"{backup_id}{PARTIAL}"
        received = partial.stat().st_size if partial.exists() else 0
        return {"id": backup_id, "received": received, "complete": False}

    def pending(self, owner: str, backup_id: str) -> dict[str, Any]:
        path = self.folder(owner) / f"{backup_id}{PENDING}"
        if not path.exists():
            raise NotFound(f"no upload of backup {backup_id} under way: POST /backup with its header first")
        return proto.parse_header(path.read_bytes())

    def append(self, owner: str, backup_id: str, offset: int, data: bytes) -> dict[str, Any]:
        """Add one segment at ``offset``; commit once the payload is whole and its digest matches."""
        state = self.status(owner, backup_id)
        if state["complete"]:
            return state
        header = self.pending(owner, backup_id)
        folder = self.folder(owner)
        partial = folder / f"{backup_id}{PARTIAL}"
        if offset != state["received"]:
            raise Conflict(f"upload of {backup_id} is at byte {state['received']}, not {offset}: resume from there")
        if offset + len(data) > header["payload"]["size"]:
            raise TooLarge(f"payload exceeds its signed size of {header['payload']['size']} bytes")
        with open(partial, "ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if offset + len(data) < header["payload"]["size"]:
            return self.status(owner, backup_id)
        return self._commit(owner, header, partial)

    def _commit(self, owner: str, header: dict[str, Any], partial: Path) -> dict[str, Any]:
        hasher = blake3.blake3()
        hasher.update_mmap(partial) if partial.stat().st_size else None
        folder = self.folder(owner)
        if hasher.hexdigest() != header["payload"]["digest"]:
            partial.unlink(missing_ok=True)
            (folder / f"{header['id']}{PENDING}").unlink(missing_ok=True)
            raise VerificationError("uploaded payload does not match the signed digest; upload discarded")
        header_path = folder / f"{header['id']}{HEADER}"
        os.replace(partial, self.payload_of(header_path))
        atomic.write_bytes(header_path, canonical(header))
        (folder / f"{header['id']}{PENDING}").unlink(missing_ok=True)
        removed = self.retain(owner)
        out = self.status(owner, header["id"], complete=True)
        out["removed"] = removed
        out["stored_now"] = header["payload"]["digest"]  # taken out by the route, which logs it
        return out

    def sweep(self, owner: str, now: float | None = None) -> list[str]:
        """Remove ``owner``'s abandoned uploads (both files untouched for STALE_UPLOAD) and
        payloads left without their header (for ORPHAN_PAYLOAD); returns the names removed."""
        folder = self.folder(owner)
        if not folder.is_dir():
            return []
        now = time.time() if now is None else now
        removed = []
        for path in sorted(folder.iterdir()):
            name = path.name
            if name.endswith(PAYLOAD):
                if (folder / f"{name[: -len(PAYLOAD)]}{HEADER}").exists():
                    continue
                files, limit = [path], ORPHAN_PAYLOAD
            elif name.endswith(PARTIAL):
                files, limit = [folder / f"{name[: -len(PARTIAL)]}{PENDING}", path], STALE_UPLOAD
            elif name.endswith(PENDING) and not (folder / f"{name[: -len(PENDING)]}{PARTIAL}").exists():
                files, limit = [path], STALE_UPLOAD
            else:
                continue
            try:
                idle = min(now - p.stat().st_mtime for p in files if p.exists())
            except (OSError, ValueError):  # gone meanwhile
                continue
            if idle >= limit:
                for gone in files:
                    try:
                        gone.unlink()
                    except OSError:  # gone already, or not removable now: the upload goes on
                        continue
                    removed.append(gone.name)
        return removed

    def retain(self, owner: str) -> list[str]:
        """Keep the newest ``keep_last(owner)`` backups and everything their chains need."""
        items = self.listing(owner)
        keep = {r["id"] for r in items[-self.keep_last(owner):]}
        by_id = {r["id"]: r for r in items}
        for backup_id in list(keep):
            base = by_id[backup_id]["base_backup"]
            while base and base in by_id and base not in keep:
                keep.add(base)
                base = by_id[base]["base_backup"]
        removed = []
        folder = self.folder(owner)
        for item in items:
            if item["id"] not in keep:
                header_path = folder / f"{item['id']}{HEADER}"
                # Header first: without it the payload is never served, so a crash here is harmless.
                header_path.unlink(missing_ok=True)
                self.payload_of(header_path).unlink(missing_ok=True)
                removed.append(item["id"])
        return removed
