"""The publisher side of index@2: the ordered change list and signed slices, cached."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import blake3

from hn.errors import NoIdentity
from hn.proto import timefmt
from hn.proto.canonical import canonical, doc_digest
from hn.proto.index import MAX_SLICE_ENTRIES, TOMBSTONE, build_slice, format_cursor, parse_cursor, tombstone
from hn.vault import identities, presence
from hn.vault.home import Home
from hn.vault.identities import Identity
from hn.vault.store import index_entry, load_catalog


@dataclass
class Snapshot:
    head: str
    identity: Identity
    presence: dict[str, Any]
    presence_digest: str
    keys: list[tuple[int, str]]
    changes: list[dict[str, Any]]
    live: dict[str, dict[str, Any]]  # id -> index entry of what /artifact may serve


class Publisher:
    """Answers /federate/index; rebuilds its change list only when the vault moved."""

    def __init__(self, home: Home, source: str) -> None:
        self.home = home
        self.source = source
        self._snap: Snapshot | None = None
        self._slices: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    def snapshot(self) -> Snapshot:
        seq, head = self.home.head()
        if self._snap is not None and self._snap.head == head:
            return self._snap
        me = identities.load(self.home)
        doc, changed = presence.refresh(self.home, me)
        if changed:
            seq, head = self.home.head()
        catalog = load_catalog(self.home)
        rows: list[tuple[tuple[int, str], dict[str, Any]]] = []
        for entry in catalog.entries.values():
            change = int(entry.get("index_seq", 0))
            if change <= 0 or entry.get("direction") == "in":
                continue
            item = index_entry(entry) if entry.get("published") else tombstone(entry["kind"], entry["id"])
            rows.append(((change, entry["id"]), item))
        rows.sort(key=lambda r: r[0])
        changes = [r[1] for r in rows]
        live = {e["id"]: e for e in changes if e["type"] != TOMBSTONE}
        self._snap = Snapshot(head, me, doc, doc_digest(doc), [r[0] for r in rows], changes, live)
        self._slices.clear()
        return self._snap

    def etag(self) -> str:
        """Names the index state: unchanged presence digest means nothing new to fetch.

        Consumers send it only after a complete refresh, so a 304 means they hold it all.
        """
        snap = self.snapshot()
        return '"' + blake3.blake3(snap.presence_digest.encode()).hexdigest()[:32] + '"'

    def slice_bytes(self, cursor: str, limit: int = MAX_SLICE_ENTRIES) -> bytes:
        snap = self.snapshot()
        limit = max(1, min(limit, MAX_SLICE_ENTRIES))
        key = (snap.presence_digest, cursor, limit)
        cached = self._slices.get(key)
        if cached is not None:
            return cached
        pos = parse_cursor(cursor)
        start = bisect.bisect_right(snap.keys, pos)
        taken = snap.changes[start:start + limit]
        more = start + limit < len(snap.changes)
        if more:
            next_cursor = format_cursor(snap.keys[start + limit - 1])
        elif taken or start:
            next_cursor = format_cursor((snap.keys[-1][0], "\uffff")) if snap.keys else cursor
        else:
            next_cursor = cursor
        doc = build_slice(snap.identity.keys, self.source, snap.presence, cursor, next_cursor, more, taken,
                          timefmt.now_iso())
        raw = canonical(doc)
        self._slices[key] = raw
        while len(self._slices) > 64:
            self._slices.popitem(last=False)
        return raw


def local_publisher(home: Home, source: str) -> Publisher | None:
    try:
        identities.load(home)
    except NoIdentity:
        return None
    return Publisher(home, source)
