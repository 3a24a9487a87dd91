"""Records a DHT node holds for others: only valid dht_hint@1 values, newest seq per key.

Replaces kademlia's ForgetfulStorage, which keeps any value from anyone and republishes
whatever it holds every hour (so a stale copy could overwrite the newest network-wide).
Here every value is verified on arrival, a lower seq never replaces a higher one, an
equal seq with other bytes is a fork and refused, expired records are dropped, and the
number of records is capped.

With a folder, the store survives a restart (THREATS.md 2): the highest seq seen per key
(the high-water mark, kept even after its record expired) is written to ``seqs.json``
soon after it rises, and the records to ``held.json``; both are read back, and every
record verified again, when the node starts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hn.errors import HnError, MalformedDocument
from hn.proto import timefmt
from hn.proto.canonical import canonical, loads_strict
from hn.proto.dht_hint import MAX_BYTES, MAX_SKEW, Hint, SkewError, parse_hint
from hn.vault import atomic

log = logging.getLogger("hn.dht")

MAX_RECORDS = 10_000
# High-water marks outlive their records (a hint that expired can be offered again while
# an older one of the same DID still is valid), so there are more of them, oldest dropped.
MARKS_PER_RECORD = 4
SEQS_FILE, HELD_FILE = "seqs.json", "held.json"
SEQS_TYPE, HELD_TYPE = "dht_seqs@1", "dht_held@1"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    hint: Hint | None = None


class HintStore:
    def __init__(self, cap: int = MAX_RECORDS, clock: Callable[[], float] | None = None,
                 folder: Path | None = None) -> None:
        self.cap = cap
        # Read through the module at call time, so a test that moves timefmt.now moves us too.
        self.clock: Callable[[], float] = clock or (lambda: timefmt.now())
        self.records: dict[bytes, Hint] = {}
        # key -> highest seq ever accepted for it, least recently raised first.
        self.marks: dict[bytes, int] = {}
        self.max_marks = cap * MARKS_PER_RECORD
        self.refused = 0
        # Hints refused as issued beyond the skew window: a sign that a clock is off.
        self.skewed = 0
        self.folder = folder
        self.marks_dirty = False
        self.records_dirty = False
        # Called when a mark rose, so that the owner can write it to disk soon.
        self.on_mark: Callable[[], None] | None = None
        if folder is not None:
            self._load()

    def offer(self, key: object, value: object) -> Verdict:
        """Validate and keep ``value`` under ``key``; the verdict is what a STORE answers."""
        verdict = self._check(key, value)
        if not verdict.accepted:
            self.refused += 1
        return verdict

    def _check(self, key: object, value: object) -> Verdict:
        if not isinstance(key, bytes) or len(key) != 20:
            return Verdict(False, "bad key")
        now = self.clock()
        try:
            hint = parse_hint(value, now=now, key=key)
        except SkewError as exc:
            self.skewed += 1
            log.warning("dht.skew", extra={"hn": {"ahead_s": round(exc.ahead), "max_s": MAX_SKEW}})
            return Verdict(False, exc.message)
        except HnError as exc:
            return Verdict(False, exc.message)
        held = self.get_hint(key)
        mark = self.marks.get(key, 0)
        if held is not None and held.seq > mark:
            mark = held.seq
        if hint.seq < mark:
            log.info("dht.rollback", extra={"hn": {"did": hint.did, "seq": hint.seq, "held": mark}})
            return Verdict(False, f"seq {hint.seq} is older than the highest seq seen, {mark}")
        if held is not None and hint.seq == held.seq:
            if hint.raw == held.raw:
                return Verdict(True, "already held", held)
            log.warning("dht.fork", extra={"hn": {"did": hint.did, "seq": hint.seq}})
            return Verdict(False, f"fork: another hint with seq {hint.seq} is held")
        if held is None and len(self.records) >= self.cap:
            self.prune()
            if len(self.records) >= self.cap:
                return Verdict(False, "record store is full")
        self.records[key] = hint
        self.records_dirty = True
        self._raise_mark(key, hint.seq)
        return Verdict(True, "stored", hint)

    def _raise_mark(self, key: bytes, seq: int) -> None:
        if self.marks.get(key, 0) >= seq:
            return
        self.marks.pop(key, None)
        self.marks[key] = seq
        while len(self.marks) > self.max_marks:
            del self.marks[next(iter(self.marks))]
        self.marks_dirty = True
        if self.on_mark is not None:
            self.on_mark()

    def get_hint(self, key: bytes) -> Hint | None:
        hint = self.records.get(key)
        if hint is not None and hint.expires <= self.clock():
            del self.records[key]
            self.records_dirty = True
            return None
        return hint

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        hint = self.get_hint(key)
        return hint.raw if hint is not None else default

    def prune(self) -> int:
        now = self.clock()
        dead = [k for k, h in self.records.items() if h.expires <= now]
        for key in dead:
            del self.records[key]
        if dead:
            self.records_dirty = True
        return len(dead)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self.prune()
        return iter([(k, h.raw) for k, h in self.records.items()])

    # -- on disk ----------------------------------------------------------------------
    def save_marks(self) -> None:
        """Write the high-water marks if they changed (atomically; bounded by ``max_marks``)."""
        if self.folder is None or not self.marks_dirty:
            return
        self.marks_dirty = False
        doc = {"type": SEQS_TYPE, "seqs": [[k.hex(), s] for k, s in self.marks.items()]}
        try:
            atomic.write_bytes(self.folder / SEQS_FILE, canonical(doc), mode=0o600)
        except BaseException:
            self.marks_dirty = True
            raise

    def save(self) -> None:
        """Write the marks and the records held, each only if it changed."""
        self.save_marks()
        if self.folder is None or not self.records_dirty:
            return
        self.prune()
        self.records_dirty = False
        doc = {"type": HELD_TYPE, "records": [h.raw.decode("utf-8") for h in self.records.values()]}
        try:
            atomic.write_bytes(self.folder / HELD_FILE, canonical(doc), mode=0o600)
        except BaseException:
            self.records_dirty = True
            raise

    def _read(self, name: str, kind: str, field: str, limit: int) -> list[Any]:
        assert self.folder is not None
        path = self.folder / name
        if not path.exists():
            return []
        try:
            doc = loads_strict(path.read_bytes(), max_bytes=limit)
            if not isinstance(doc, dict) or doc.get("type") != kind or not isinstance(doc.get(field), list):
                raise MalformedDocument(f"not a {kind} document")
            return list(doc[field])
        except (HnError, ValueError, OSError) as exc:
            log.warning("dht: ignoring unreadable file %s: %s", path, exc)
            return []

    def _load(self) -> None:
        for item in self._read(SEQS_FILE, SEQS_TYPE, "seqs", self.max_marks * 80 + 4096):
            with contextlib.suppress(ValueError, TypeError):
                key_hex, seq = item
                key = bytes.fromhex(key_hex)
                if len(key) == 20 and isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
                    self._raise_mark(key, seq)
        now = self.clock()
        for text in self._read(HELD_FILE, HELD_TYPE, "records", self.cap * (2 * MAX_BYTES + 8) + 4096):
            if len(self.records) >= self.cap:
                break
            with contextlib.suppress(HnError, TypeError):
                # Expired records and those issued beyond the skew window are dropped, as on STORE.
                hint = parse_hint(str(text).encode("utf-8"), now=now)
                held = self.records.get(hint.key)
                if hint.seq >= self.marks.get(hint.key, 0) and (held is None or hint.seq > held.seq):
                    self.records[hint.key] = hint
                    self._raise_mark(hint.key, hint.seq)
        self.marks_dirty = self.records_dirty = False
