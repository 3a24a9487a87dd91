"""What a relay holds for each relayed peer, under cache/relay/<did-tail>/.

Each peer has one ``record.json`` (the verified presence@2 exactly as signed, its
identity@1, and the expiry the relay computed) and the verified index@2 slices exactly
as signed. A new push replaces the whole set atomically: the slices are written first
under new names, then the record that names them, then the old files are removed, so a
crash leaves either the old or the new set readable. Storage is capped per peer and for
all peers together.

An expired record is removed by the node, by its pruner or by the first read that finds
it expired, and each removal logs ``relay.expire``. Listing (``live``) only reads: `hn mcp
relay list` leaves removals, and their log line, to the node.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hn.errors import MalformedDocument, QuotaExceeded
from hn.proto.canonical import canonical, hexdigest, loads_canonical
from hn.vault import atomic
from hn.vault.home import Home
from hn.vault.identities import did_tail

DEFAULT_CAP = 8 * 1024 * 1024
# All relayed peers together: policy relay.accept may admit DIDs anyone can make.
DEFAULT_TOTAL = 1024 * 1024 * 1024
log = logging.getLogger("hn.relay")


@dataclass
class Relayed:
    did: str
    presence: dict[str, Any]
    identity: dict[str, Any]
    expires_at: float
    stored_at: float
    slices: list[str]
    size: int
    readers: list[str] | None = None  # None: a public index; else who may read it (push readers)

    def summary(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "seq": self.presence.get("seq"),
            "expires_at": self.expires_at,
            "stored_at": self.stored_at,
            "slices": len(self.slices),
            "bytes": self.size,
            "url": self.presence.get("url"),
        }


class RelayStore:
    def __init__(self, home: Home, cap_bytes: int = DEFAULT_CAP, total_bytes: int = DEFAULT_TOTAL) -> None:
        self.root = home.path("cache", "relay")
        self.cap = cap_bytes
        self.total = total_bytes

    def folder(self, did: str) -> Path:
        return self.root / did_tail(did)

    def put(self, did: str, presence: dict[str, Any], identity: dict[str, Any],
            slices: list[dict[str, Any]], expires_at: float, now: float,
            readers: list[str] | None = None) -> Relayed:
        raw_slices = [canonical(s) for s in slices]
        size = sum(len(r) for r in raw_slices) + len(canonical(presence)) + len(canonical(identity))
        if size > self.cap:
            raise QuotaExceeded(f"relayed data for {did} would take {size} bytes; the cap is {self.cap}")
        others = sum(held.size for other in self.dids() if other != did
                     and (held := self._read(other)) is not None)
        if others + size > self.total:
            raise QuotaExceeded(f"this relay holds {others} bytes for other peers; {did}'s {size} would pass its "
                                f"cap of {self.total} bytes for all peers")
        folder = self.folder(did)
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for raw in raw_slices:
            name = f"slice-{hexdigest(raw)[:32]}.json"
            atomic.write_new(folder / name, raw)
            names.append(name)
        record = {
            "did": did, "presence": presence, "identity": identity, "expires_at": expires_at,
            "stored_at": now, "slices": names, "size": size,
        }
        if readers is not None:
            record["readers"] = sorted(set(readers))
        atomic.write_bytes(folder / "record.json", canonical(record))
        keep = set(names) | {"record.json"}
        for path in folder.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)
        return self._parse(record)

    def _parse(self, record: dict[str, Any]) -> Relayed:
        readers = record.get("readers")
        return Relayed(record["did"], record["presence"], record["identity"], float(record["expires_at"]),
                       float(record["stored_at"]), list(record["slices"]), int(record["size"]),
                       None if readers is None else [str(r) for r in readers])

    def _read(self, did: str) -> Relayed | None:
        path = self.folder(did) / "record.json"
        if not path.exists():
            return None
        try:
            return self._parse(loads_canonical(path.read_bytes()))
        except (MalformedDocument, KeyError, TypeError, ValueError, OSError):
            return None

    def get(self, did: str, now: float) -> Relayed | None:
        """The live record for ``did``; an expired one is removed (logged as relay.expire)
        and counts as absent."""
        record = self._read(did)
        if record is None:
            return None
        if record.expires_at <= now:
            self._expire(did, record.expires_at, "read")
            return None
        return record

    def held_identity(self, did: str) -> dict[str, Any] | None:
        """The identity@1 stored with ``did``'s record, live or not yet pruned: the key
        history this relay pinned for a peer that is not one of its contacts."""
        record = self._read(did)
        return record.identity if record is not None else None

    def _expire(self, did: str, expires_at: float | None, by: str) -> None:
        self.remove(did)
        log.info("relay.expire", extra={"hn": {"did": did, "expires_at": expires_at, "by": by}})

    def slices(self, record: Relayed) -> list[dict[str, Any]]:
        folder = self.folder(record.did)
        out = []
        for name in record.slices:
            try:
                out.append(loads_canonical((folder / name).read_bytes()))
            except (OSError, MalformedDocument):
                continue
        return out

    def remove(self, did: str) -> None:
        folder = self.folder(did)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)

    def dids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted("did:hn:" + p.name for p in self.root.iterdir() if (p / "record.json").exists())

    def prune(self, now: float) -> list[str]:
        """Drop every expired record (each logged as relay.expire); returns the DIDs removed."""
        removed = []
        for did in self.dids():
            path = self.folder(did) / "record.json"
            expires: float | None
            try:
                expires = float(loads_canonical(path.read_bytes())["expires_at"])
            except (MalformedDocument, KeyError, TypeError, ValueError, OSError):
                expires = None  # unreadable: dropped like an expired one
            if expires is None or expires <= now:
                self._expire(did, expires, "pruner")
                removed.append(did)
        return removed

    def live(self, now: float) -> list[Relayed]:
        """The live records, read only: expired ones are left for the node to remove."""
        out = []
        for did in self.dids():
            record = self._read(did)
            if record is not None and record.expires_at > now:
                out.append(record)
        return out


def disk_usage(folder: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            total += (Path(base) / name).stat().st_size
    return total
