"""Records a DHT node holds for others: only valid dht_hint@1 values, newest seq per key.

Replaces kademlia's ForgetfulStorage, which keeps any value from anyone and republishes
whatever it holds every hour (so a stale copy could overwrite the newest network-wide).
Here every value is verified on arrival, a lower seq never replaces a higher one, an
equal seq with other bytes is a fork and refused, expired records are dropped, and the
number of records is capped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hn.errors import HnError
from hn.proto import timefmt
from hn.proto.dht_hint import MAX_SKEW, Hint, SkewError, parse_hint

log = logging.getLogger("hn.dht")

MAX_RECORDS = 10_000


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    hint: Hint | None = None


class HintStore:
    def __init__(self, cap: int = MAX_RECORDS, clock: Callable[[], float] | None = None) -> None:
        self.cap = cap
        # Read through the module at call time, so a test that moves timefmt.now moves us too.
        self.clock: Callable[[], float] = clock or (lambda: timefmt.now())
        self.records: dict[bytes, Hint] = {}
        self.refused = 0
        # Hints refused as issued beyond the skew window: a sign that a clock is off.
        self.skewed = 0

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
        if held is not None:
            if hint.seq < held.seq:
                return Verdict(False, f"seq {hint.seq} is older than the held seq {held.seq}")
            if hint.seq == held.seq:
                if hint.raw == held.raw:
                    return Verdict(True, "already held", held)
                log.warning("dht.fork", extra={"hn": {"did": hint.did, "seq": hint.seq}})
                return Verdict(False, f"fork: another hint with seq {hint.seq} is held")
        elif len(self.records) >= self.cap:
            self.prune()
            if len(self.records) >= self.cap:
                return Verdict(False, "record store is full")
        self.records[key] = hint
        return Verdict(True, "stored", hint)

    def get_hint(self, key: bytes) -> Hint | None:
        hint = self.records.get(key)
        if hint is not None and hint.expires <= self.clock():
            del self.records[key]
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
        return len(dead)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self.prune()
        return iter([(k, h.raw) for k, h in self.records.items()])
