"""Small bounded bookkeeping for the DHT: token buckets, round-trip times, dead peers.

Every table here has a size cap, so a flood of distinct source addresses costs memory in
proportion to the cap, never to the flood.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class BoundedDict(OrderedDict[K, V], Generic[K, V]):
    """An insertion-ordered dict that forgets its oldest entries past ``cap``."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            self.move_to_end(key)
        super().__setitem__(key, value)
        while len(self) > self.cap:
            self.popitem(last=False)


class RateLimiter:
    """Token buckets per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, cap: int = 8192) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: BoundedDict[object, tuple[float, float]] = BoundedDict(cap)

    def allow(self, key: object, cost: float = 1.0) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < cost:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - cost, now)
        return True


class RttEstimator:
    """Jacobson/Karels smoothed round-trip times (RFC 6298), per peer and overall.

    A request to a peer times out after SRTT + 4 RTTVAR of that peer (or of all peers,
    for one never measured), clamped: fast on loopback, patient on slow links.
    """

    def __init__(self, initial: float, floor: float, ceiling: float, cap: int = 4096) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.srtt = initial / 3
        self.rttvar = initial / 6
        self.peers: BoundedDict[tuple[str, int], tuple[float, float]] = BoundedDict(cap)

    @staticmethod
    def _update(srtt: float, rttvar: float, sample: float) -> tuple[float, float]:
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - sample)
        srtt = 0.875 * srtt + 0.125 * sample
        return srtt, rttvar

    def sample(self, addr: tuple[str, int], rtt: float) -> None:
        self.srtt, self.rttvar = self._update(self.srtt, self.rttvar, rtt)
        if addr in self.peers:
            srtt, rttvar = self.peers[addr]
            self.peers[addr] = self._update(srtt, rttvar, rtt)
        else:
            self.peers[addr] = (rtt, rtt / 2)

    def timeout(self, addr: tuple[str, int] | None = None) -> float:
        srtt, rttvar = self.peers.get(addr, (self.srtt, self.rttvar)) if addr else (self.srtt, self.rttvar)
        # Never below what the network as a whole needs right now: a loaded event loop
        # slows every peer at once.
        value = max(srtt + 4 * rttvar, self.srtt + 2 * self.rttvar)
        return min(self.ceiling, max(self.floor, value))

    def stall_after(self, addr: tuple[str, int] | None = None) -> float:
        """When a lookup stops waiting for this request before opening another one."""
        srtt, _ = self.peers.get(addr, (self.srtt, self.rttvar)) if addr else (self.srtt, self.rttvar)
        return min(self.timeout(addr), max(self.floor / 2, 2 * max(srtt, self.srtt)))


class DeadPeers:
    """Addresses that recently failed to answer: lookups skip them until their time is up."""

    def __init__(self, ttl: float, cap: int = 8192) -> None:
        self.ttl = ttl
        self.until: BoundedDict[tuple[str, int], float] = BoundedDict(cap)

    def mark(self, addr: tuple[str, int]) -> None:
        self.until[addr] = time.monotonic() + self.ttl

    def clear(self, addr: tuple[str, int]) -> None:
        self.until.pop(addr, None)

    def __contains__(self, addr: object) -> bool:
        when = self.until.get(addr)  # type: ignore[call-overload]
        if when is None:
            return False
        if when < time.monotonic():
            self.until.pop(addr, None)  # type: ignore[call-overload]
            return False
        return True
