"""One DHT node: listen, join, publish and find dht_hint@1 records, keep its state as JSON.

Built on kademlia's Server for its shape (node id, protocol, routing table), with its
unsafe parts replaced: values are verified hints (hn.dht.storage), lookups slide a window
(hn.dht.lookup), the hourly blind republish of others' records is gone (publishers
republish their own), ``set`` reports how many holders really accepted, and the state
file is JSON, never pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kademlia.network import Server
from kademlia.node import Node

from hn.dht.config import DhtConfig
from hn.dht.lookup import LookupResult, lookup
from hn.dht.protocol import HnProtocol, parse_contact
from hn.dht.storage import HintStore
from hn.errors import HnError, MalformedDocument
from hn.proto import timefmt
from hn.proto.canonical import canonical, loads_strict
from hn.proto.dht_hint import Hint, dht_key, newest, parse_hint
from hn.vault import atomic

log = logging.getLogger("hn.dht")
STATE_TYPE = "dht_state@1"
MAX_HANDOFF = 64
# A raised high-water mark reaches the disk this many seconds later at most.
MARKS_DELAY = 1.0


@dataclass
class PublishResult:
    key: str
    acks: int
    refused: int
    unreachable: int
    holders: list[str] = field(default_factory=list)
    local: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "acks": self.acks, "refused": self.refused, "unreachable": self.unreachable,
                "holders": self.holders, "local": self.local, "seconds": round(self.seconds, 4)}


@dataclass
class GetResult:
    hint: Hint | None
    holders: int
    invalid: int
    queried: int
    restored: int = 0
    seconds: float = 0.0


class DhtNode(Server):  # type: ignore[misc]
    """A DHT node. ``client=True``: answers no requests, so no peer ever adds it to a table."""

    def __init__(self, config: DhtConfig | None = None, *, node_id: bytes | None = None,
                 client: bool = False, state_path: Path | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config or DhtConfig()
        # Wall clock for expiry and skew checks; one per node so that tests can run nodes
        # with skewed clocks side by side in one process (timing of RPCs uses monotonic time).
        self.clock: Callable[[], float] = clock or (lambda: timefmt.now())
        self.client = client
        self.state_path = state_path
        saved = self._read_state() if state_path is not None else {}
        node_id = node_id or saved.get("node_id") or os.urandom(20)
        super().__init__(ksize=self.config.ksize, alpha=self.config.alpha, node_id=node_id)
        # Set after the base class: an empty store is falsy and would be swapped for the stock one.
        # A full node with a state file keeps what it holds, and the highest seq per key,
        # beside it (THREATS.md 2); a client holds nothing.
        folder = state_path.parent if state_path is not None and not client else None
        self.storage: HintStore = HintStore(self.config.max_records, self.clock, folder)
        self.storage.on_mark = self._mark_raised
        self._marks_timer: asyncio.TimerHandle | None = None
        self.saved_contacts: list[tuple[str, int]] = saved.get("contacts", [])
        self.own: dict[bytes, bytes] = saved.get("own", {})
        self.protocol: HnProtocol | None = None
        self.maintenance: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None

    # -- lifecycle --------------------------------------------------------------------
    def _create_protocol(self) -> HnProtocol:
        return HnProtocol(self.node, self.storage, self.config, client=self.client, on_welcome=self._handoff)

    async def listen(self, port: int, interface: str = "127.0.0.1") -> tuple[str, int]:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        try:
            self.transport, self.protocol = await loop.create_datagram_endpoint(
                self._create_protocol, local_addr=(interface, port))
        except OSError as exc:
            raise HnError(f"cannot listen for the DHT on {interface}:{port}: {exc.strerror or exc}") from exc
        sock = self.transport.get_extra_info("sockname")
        self.address = (str(sock[0]), int(sock[1]))
        if not self.client:
            self.maintenance = asyncio.ensure_future(self._maintain())
        return self.address

    def stop(self) -> None:
        if self._marks_timer is not None:
            self._marks_timer.cancel()
            self._save_marks()  # a mark raised in the last second is not lost
        if self.maintenance is not None:
            self.maintenance.cancel()
        if self.protocol is not None:
            self.protocol.close()
        if self.transport is not None:
            self.transport.close()

    @property
    def proto(self) -> HnProtocol:
        if self.protocol is None:
            raise HnError("the DHT node is not listening")
        return self.protocol

    # -- joining ----------------------------------------------------------------------
    async def bootstrap(self, addrs: list[tuple[str, int]]) -> int:  # type: ignore[override]
        """Join through saved contacts first, then ``addrs``; returns the contacts known."""
        seen: list[tuple[str, int]] = []
        for addr in [*self.saved_contacts, *addrs]:
            if addr not in seen and addr != self.address:
                seen.append(addr)
        pings = await asyncio.gather(*(self.bootstrap_node(a) for a in seen))
        found = [n for n in pings if n is not None]
        if found:
            deadline = time.monotonic() + self.config.lookup_deadline
            result = await lookup(self.proto, self.node.id, find_value=False, deadline=deadline, seeds=found)
            for contact in result.closest:
                if self.client:
                    self._client_contacts[contact.id] = contact
        return len(self.proto.router) if not self.client else len(self._client_contacts)

    async def bootstrap_node(self, addr: tuple[str, int]) -> Node | None:
        ok, data = await self.proto.call(addr, "ping", self.node.id, timeout=self.config.rpc_ceiling)
        contact = parse_contact([data, addr[0], addr[1]]) if ok else None
        if contact is not None:
            self.proto.welcome(contact)
            if self.client:
                self._client_contacts[contact.id] = contact
        return contact

    @property
    def _client_contacts(self) -> dict[bytes, Node]:
        # A client keeps no routing table of its own worth saving; it only needs seeds.
        if not hasattr(self, "_client_seen"):
            self._client_seen: dict[bytes, Node] = {}
        return self._client_seen

    def _seeds(self, key: bytes) -> list[Node] | None:
        if not self.client:
            return None
        target = int.from_bytes(key, "big")
        return sorted(self._client_contacts.values(), key=lambda n: n.long_id ^ target)[: self.config.ksize]

    # -- records ----------------------------------------------------------------------
    async def publish(self, raw: bytes, *, deadline: float | None = None) -> PublishResult:
        """Store a hint at the k closest nodes; counts only the holders that accepted it."""
        started = time.monotonic()
        hint = parse_hint(raw, now=self.clock())
        key = hint.key
        if not self.client:
            self.own[key] = raw
            self.save_state()
        deadline = deadline or started + self.config.lookup_deadline
        found = await lookup(self.proto, key, find_value=False, deadline=deadline, seeds=self._seeds(key))
        out = PublishResult(key=key.hex(), acks=0, refused=0, unreachable=0)
        farthest = max((n.long_id ^ int.from_bytes(key, "big") for n in found.closest), default=None)
        if not self.client and (farthest is None or self.node.long_id ^ int.from_bytes(key, "big") < farthest
                                or len(found.closest) < self.config.ksize):
            out.local = self.storage.offer(key, raw).accepted
        answers = await asyncio.gather(*(self._store_at(n, key, raw, deadline) for n in found.closest))
        for node, (ok, accepted) in zip(found.closest, answers):
            if not ok:
                out.unreachable += 1
            elif accepted:
                out.acks += 1
                out.holders.append(f"{node.ip}:{node.port}")
            else:
                out.refused += 1
        out.seconds = time.monotonic() - started
        return out

    async def _store_at(self, node: Node, key: bytes, raw: bytes, deadline: float) -> tuple[bool, bool]:
        timeout = max(0.05, min(self.proto.rtt.timeout((node.ip, node.port)) * 2, deadline - time.monotonic()))
        ok, data = await self.proto.call((node.ip, node.port), "store", self.node.id, key, raw, timeout=timeout)
        return ok, data is True

    async def get_hints(self, did: str, *, deadline: float | None = None, quorum: int | None = None) -> GetResult:
        """Ask several holders, verify every value, keep the highest seq (never the majority)."""
        started = time.monotonic()
        key = dht_key(did)
        valid: list[Hint] = []
        invalid = 0

        def accept(value: Any) -> bool:
            nonlocal invalid
            try:
                hint = parse_hint(value, now=self.clock(), key=key)
            except HnError:
                invalid += 1
                return False
            valid.append(hint)
            return True

        local = self.storage.get_hint(key)
        if local is not None:
            valid.append(local)
        result = await lookup(self.proto, key, find_value=True, deadline=deadline or started + self.config.lookup_deadline,
                              accept=accept, quorum=quorum or self.config.quorum, seeds=self._seeds(key))
        best = newest(valid)
        out = GetResult(best, len(result.values), invalid, result.queried)
        if best is not None:
            out.restored = self._restore(best, result)
        out.seconds = time.monotonic() - started
        return out

    def _restore(self, best: Hint, result: LookupResult) -> int:
        """Re-store the newest hint where a holder was stale or empty (in the background)."""
        stale = list(result.without_value)
        for node, value in result.values:
            if value != best.raw:
                stale.append(node)
        for node in stale:
            self.proto.spawn(self._store_at(node, best.key, best.raw, time.monotonic() + 2))
        return len(stale)

    async def settle(self, timeout: float = 2.0) -> None:
        """Wait (boundedly) for background stores, e.g. before a short-lived client exits."""
        tasks = list(self.proto.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _handoff(self, node: Node) -> None:
        """A new contact: give it the records it is now among the closest for (paper, 2.5).

        Keys are digests already and are used as they are; the stock code hashed them a
        second time and so handed records to the wrong nodes.
        """
        sent = 0
        for key, raw in self.storage:
            if sent >= MAX_HANDOFF:
                break
            target = int.from_bytes(key, "big")
            neighbours = self.proto.router.find_neighbors(Node(key), exclude=node)
            if len(neighbours) >= self.config.ksize:
                if node.long_id ^ target >= neighbours[-1].long_id ^ target:
                    continue
                if self.node.long_id ^ target >= neighbours[0].long_id ^ target:
                    continue
            self.proto.spawn(self._store_at(node, key, raw, time.monotonic() + 2))
            sent += 1

    # -- maintenance and state ----------------------------------------------------------
    async def _maintain(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(self.config.maintenance_interval)
            try:
                self.storage.prune()
                now = time.monotonic()
                if now - last_refresh >= self.config.refresh_after:
                    last_refresh = now
                    for node_id in self.proto.get_refresh_ids():
                        await lookup(self.proto, node_id, find_value=False,
                                     deadline=time.monotonic() + self.config.lookup_deadline)
                self.save_state()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dht maintenance failed")

    def _mark_raised(self) -> None:
        """A high-water mark rose: write the marks within ``MARKS_DELAY`` (once for a burst)."""
        if self.storage.folder is None or self._marks_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._save_marks()
            return
        self._marks_timer = loop.call_later(MARKS_DELAY, self._save_marks)

    def _save_marks(self) -> None:
        self._marks_timer = None
        try:
            self.storage.save_marks()
        except (HnError, OSError) as exc:
            log.warning("dht: cannot save the highest seqs held: %s", exc)

    async def publish_own(self) -> list[PublishResult]:
        """Store again our own hints saved in the state file (still valid ones), e.g. on start.

        Holders may have restarted or left; without this, a hint would reach the DHT again
        only at the next republish (75% of its lifetime).
        """
        out = []
        for raw in list(self.own.values()):
            with contextlib.suppress(HnError):
                out.append(await self.publish(raw))
        return out

    def good_contacts(self) -> list[tuple[str, int]]:
        proto = self.proto
        contacts = [(n.ip, n.port) for n in proto.router.contacts()]
        contacts.sort(key=lambda a: proto.last_ok.get(a, 0.0), reverse=True)
        return contacts[: self.config.saved_contacts]

    def save_state(self) -> None:
        if self.state_path is None or self.client or self.protocol is None:
            return
        now = self.clock()
        own = []
        for raw in self.own.values():
            with contextlib.suppress(HnError):
                parse_hint(raw, now=now)
                own.append(raw.decode("utf-8"))
        doc = {"type": STATE_TYPE, "node_id": self.node.id.hex(),
               "contacts": [[ip, port] for ip, port in self.good_contacts()] or
                           [list(a) for a in self.saved_contacts],
               "own": own}
        atomic.write_bytes(self.state_path, canonical(doc), mode=0o600)
        self.storage.save()

    def _read_state(self) -> dict[str, Any]:
        assert self.state_path is not None
        if not self.state_path.exists():
            return {}
        try:
            doc = loads_strict(self.state_path.read_bytes(), max_bytes=1 << 20)
            if not isinstance(doc, dict) or doc.get("type") != STATE_TYPE:
                raise MalformedDocument("not a dht_state@1 document")
            node_id = bytes.fromhex(str(doc["node_id"]))
            contacts = [(str(ip), int(port)) for ip, port in doc.get("contacts", [])]
            own: dict[bytes, bytes] = {}
            for text in doc.get("own", []):
                with contextlib.suppress(HnError):
                    hint = parse_hint(str(text).encode("utf-8"), now=self.clock())
                    own[hint.key] = hint.raw
        except (HnError, ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("dht: ignoring unreadable state file %s: %s", self.state_path, exc)
            return {}
        return {"node_id": node_id if len(node_id) == 20 else None, "contacts": contacts, "own": own}

    def stats(self) -> dict[str, Any]:
        proto = self.proto
        return {"node_id": self.node.id.hex(), "contacts": len(proto.router), "records": len(self.storage),
                "skew_refused": self.storage.skewed, "counters": dict(proto.stats)}

    # Stock entry points that would bypass validation or use SHA-1 keys.
    async def set(self, key: Any, value: Any) -> bool:
        raise HnError("use DhtNode.publish with a signed dht_hint@1")

    async def set_digest(self, dkey: Any, value: Any) -> bool:
        raise HnError("use DhtNode.publish with a signed dht_hint@1")

    async def get(self, key: Any) -> Any:
        raise HnError("use DhtNode.get_hints with a DID")

    def save_state_regularly(self, fname: Any, frequency: int = 600) -> None:
        raise HnError("DHT state is saved as JSON by the node's maintenance task")
