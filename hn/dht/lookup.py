"""Iterative lookups with a sliding window of requests in flight and an overall deadline.

kademlia's spider crawl runs in lockstep rounds: each round waits for its slowest (or
dead) peer. Here up to ``alpha`` requests are in flight at any time; a request slower
than about twice the round-trip time no longer holds its slot, so a dead peer costs one
slot for a moment, not the lookup its whole timeout. The lookup ends when the k closest
nodes that did not fail have all answered, when enough holders returned valid values,
or at the deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kademlia.node import Node

from hn.dht.protocol import HnProtocol

NEW, WAITING, ANSWERED, FAILED = range(4)


@dataclass
class LookupResult:
    closest: list[Node]
    values: list[tuple[Node, Any]] = field(default_factory=list)
    # Answered without a (valid) value: candidates for re-storing the newest one.
    without_value: list[Node] = field(default_factory=list)
    queried: int = 0
    failed: int = 0
    timed_out: bool = False


async def lookup(
    proto: HnProtocol, target: bytes, *, find_value: bool, deadline: float,
    accept: Callable[[Any], bool] | None = None, quorum: int | None = None,
    seeds: list[Node] | None = None,
) -> LookupResult:
    """Find the k closest nodes to ``target`` (and, with ``find_value``, their values).

    ``accept`` decides whether a returned value counts (it verifies the hint); values it
    refuses are ignored. ``quorum``: stop once this many holders returned accepted values.
    """
    cfg = proto.config
    k, alpha = cfg.ksize, cfg.alpha
    tlong = int.from_bytes(target, "big")
    me = proto.source_node.id
    nodes: dict[bytes, Node] = {}
    state: dict[bytes, int] = {}
    # Ids that peers merely claimed for an address: checked when the address is asked.
    claimed: set[bytes] = set()
    addresses: dict[tuple[str, int], bytes] = {}

    def add(candidate: Node, trusted: bool = False) -> None:
        addr = (candidate.ip, candidate.port)
        if candidate.id == me or candidate.id in nodes:
            return
        if addresses.get(addr, candidate.id) != candidate.id:
            return  # one address, one id: a second id for it is made up
        if not trusted:
            known = proto.known_id(addr)
            if known is not None and known != candidate.id:
                return
            if known is None:
                claimed.add(candidate.id)
        nodes[candidate.id] = candidate
        addresses[addr] = candidate.id
        state[candidate.id] = FAILED if addr in proto.dead else NEW

    for seed in seeds if seeds is not None else proto.router.find_neighbors(Node(target), k):
        add(seed, trusted=True)
    result = LookupResult(closest=[])
    inflight: dict[asyncio.Future[Any], tuple[Node, float, float]] = {}

    def closest_alive() -> list[Node]:
        alive = [n for n in nodes.values() if state[n.id] != FAILED]
        alive.sort(key=lambda n: n.long_id ^ tlong)
        return alive[:k]

    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                result.timed_out = True
                break
            if quorum is not None and len(result.values) >= quorum:
                break
            window = closest_alive()
            if all(state[n.id] == ANSWERED for n in window):
                break
            active = sum(1 for _, (_, started, stall) in inflight.items() if now - started < stall)
            for candidate in window:
                if active >= alpha:
                    break
                if state[candidate.id] != NEW:
                    continue
                state[candidate.id] = WAITING
                addr = (candidate.ip, candidate.port)
                task: asyncio.Future[Any] = asyncio.ensure_future(
                    proto.call_find(candidate, target, find_value, verify=candidate.id in claimed))
                inflight[task] = (candidate, now, proto.rtt.stall_after(addr))
                result.queried += 1
                active += 1
            if not inflight:
                break
            next_stall = min(started + stall for _, started, stall in inflight.values())
            wait = max(0.001, min(deadline, next_stall if next_stall > now else deadline) - now)
            done, _ = await asyncio.wait(list(inflight), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                node, _, _ = inflight.pop(future)
                ok, data = future.result()
                if not ok:
                    state[node.id] = FAILED
                    result.failed += 1
                    continue
                state[node.id] = ANSWERED
                if isinstance(data, dict):
                    value = data.get("value")
                    if accept is None or accept(value):
                        result.values.append((node, value))
                    else:
                        result.without_value.append(node)
                else:
                    if find_value:
                        result.without_value.append(node)
                    for contact in data:
                        add(contact)
    finally:
        for future in inflight:
            future.cancel()
    result.closest = [n for n in closest_alive() if state[n.id] == ANSWERED]
    return result
