"""The publisher side of index@2: the ordered change list and signed slices, cached."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import blake3

from hn.errors import NoIdentity
from hn.federation.peerindex import PeerIndex
from hn.proto import timefmt
from hn.proto.canonical import canonical, doc_digest
from hn.proto.index import MAX_SLICE_ENTRIES, TOMBSTONE, build_slice, format_cursor, parse_cursor, tombstone
from hn.vault import identities, presence
from hn.vault.home import Home
from hn.vault.identities import Identity
from hn.vault.store import catch_up, index_entry, load_catalog


@dataclass
class Snapshot:
    head: str
    identity: Identity
    presence: dict[str, Any]
    presence_digest: str
    keys: list[tuple[int, str]]
    changes: list[dict[str, Any]]
    live: dict[str, dict[str, Any]]  # id -> index entry of what /artifact may serve


def _row(entry: dict[str, Any]) -> tuple[tuple[int, str], dict[str, Any]] | None:
    """The entry's place in the change order and what a slice says about it, if anything."""
    change = int(entry.get("index_seq", 0))
    if change <= 0 or entry.get("direction") == "in":
        return None
    item = index_entry(entry) if entry.get("published") else tombstone(entry["kind"], entry["id"])
    return (change, entry["id"]), item


class _Changes:
    """The change order and the live index, caught up event by event while the log only grows."""

    def __init__(self, home: Home) -> None:
        self.catalog = load_catalog(home)
        self.entries = self.catalog.entries
        rows = sorted(r for r in map(_row, self.entries.values()) if r is not None)
        self.keys = [k for k, _ in rows]
        self.changes = [item for _, item in rows]
        self.at = {k[1]: k for k in self.keys}
        self.live = {e["id"]: e for e in self.changes if e["type"] != TOMBSTONE}
        self.index = PeerIndex.build((i, e["digest"]) for i, e in self.live.items())

    def catch_up(self, home: Home, head_seq: int, head_hash: str) -> bool:
        """Apply the events after our head; False if the log was rewritten underneath us."""
        touched = catch_up(home, self.catalog, head_seq, head_hash)
        if touched is None:
            return False
        changed: dict[str, str | None] = {}
        for entry_id in dict.fromkeys(touched):
            self._move(entry_id)
            live = self.live.get(entry_id)
            changed[entry_id] = live["digest"] if live else None
        self.index = self.index.apply(changed)
        return True

    def _move(self, entry_id: str) -> None:
        old = self.at.pop(entry_id, None)
        if old is not None:
            pos = bisect.bisect_left(self.keys, old)
            del self.keys[pos], self.changes[pos]
        self.live.pop(entry_id, None)
        row = _row(self.entries[entry_id]) if entry_id in self.entries else None
        if row is None:
            return
        key, item = row
        pos = bisect.bisect_left(self.keys, key)
        self.keys.insert(pos, key)
        self.changes.insert(pos, item)
        self.at[entry_id] = key
        if item["type"] != TOMBSTONE:
            self.live[entry_id] = item

    def head(self) -> tuple[int, str]:
        """The log head this index has caught up to."""
        return self.catalog.head_seq, self.catalog.head_hash

    def summary(self) -> dict[str, Any]:
        """What a presence says of this index: its root, size and cursor."""
        cursor = self.keys[-1][0] if self.keys else 0  # keys are sorted
        return {"root": self.index.root, "size": self.index.size, "cursor": cursor}

    def matches(self, doc: dict[str, Any] | None) -> bool:
        """Whether a presence signs exactly this index."""
        return doc is not None and doc["index"] == self.summary()


class Publisher:
    """Answers /federate/index; follows the vault's event log instead of re-reading it."""

    def __init__(self, home: Home, source: str) -> None:
        self.home = home
        self.source = source
        self._snap: Snapshot | None = None
        self._changes: _Changes | None = None
        self._slices: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    def snapshot(self) -> Snapshot:
        seq, head = self.home.head()
        if self._snap is not None and self._snap.head == head:
            return self._snap
        me = identities.load(self.home)
        changes = self._catch_up()
        doc = presence.current(self.home, me.did)
        # `hn doc add --publish` and friends re-sign the presence themselves; the node signs
        # only when nobody did (or it is due for renewal), from the index it keeps. The
        # snapshot keeps the head the signed index was read at: the presence event that
        # follows is caught up with at the next request.
        if doc is None or not changes.matches(doc) or not presence.lasts(doc, me):

            def read_index() -> tuple[dict[str, Any], tuple[int, str]]:
                nonlocal changes
                changes = self._catch_up()
                return changes.summary(), changes.head()

            doc, _ = presence.sign_fenced(self.home, me, read_index)
        self._snap = Snapshot(changes.head()[1], me, doc, doc_digest(doc), changes.keys, changes.changes,
                              changes.live)
        self._slices.clear()
        return self._snap

    def _catch_up(self) -> _Changes:
        """The index at the log's current head: caught up event by event, or rebuilt if the
        log was rewritten underneath it."""
        seq, head = self.home.head()
        if self._changes is None or not self._changes.catch_up(self.home, seq, head):
            self._changes = _Changes(self.home)
        return self._changes

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
