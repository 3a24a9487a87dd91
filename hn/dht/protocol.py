"""The DHT wire protocol: kademlia/rpcudp framing, with every input checked and bounded.

The datagram format is rpcudp's (0x00 request / 0x01 response, 20-byte message id,
msgpack body) and the RPCs are kademlia's (ping, store, find_node, find_value), so stock
kademlia nodes and ours interoperate. What changes is what a node believes:

- a malformed datagram, a wrong argument type or an unknown RPC is dropped and counted,
  never raised into the event loop's log;
- a response is accepted only from the address the request went to;
- requests and stores are rate-limited per source address (and per IP off loopback);
- a request's sender is not put in the routing table on its word: it is pinged back
  first, so clients that never answer (``client=True`` nodes, which ignore requests) and
  spoofed ids never enter anyone's table;
- each call's timeout follows the measured round-trip time, a peer that timed out is
  kept in a dead-peer cache, and a late answer clears it again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import umsgpack
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from hn.dht.config import DhtConfig
from hn.dht.limits import BoundedDict, DeadPeers, RateLimiter, RttEstimator, is_loopback
from hn.dht.routing import Addr, HnRoutingTable
from hn.dht.storage import HintStore

log = logging.getLogger("hn.dht")

REQUEST = 0
RESPONSE = 1
MAX_DATAGRAM = 4096
MAX_CONTACTS = 40
ARITY = {"ping": 1, "store": 3, "find_node": 2, "find_value": 2, "stun": 0}
MAX_VERIFYING = 128

Result = tuple[bool, Any]


def valid_id(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 20


def parse_contact(item: Any) -> Node | None:
    """A contact from a peer's answer, or None if any part of it is malformed."""
    if not isinstance(item, (list, tuple)) or len(item) != 3:
        return None
    node_id, ip, port = item
    if not valid_id(node_id) or not isinstance(ip, str) or type(port) is not int or not 0 < port < 65536:
        return None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return None
    return Node(node_id, ip, port)


class HnProtocol(KademliaProtocol):  # type: ignore[misc]
    def __init__(self, node: Node, storage: HintStore, config: DhtConfig, *, client: bool = False,
                 on_welcome: Callable[[Node], None] | None = None) -> None:
        # KademliaProtocol.__init__ would build the stock routing table; set the same fields.
        self._wait_timeout = config.rpc_ceiling
        self._outstanding: dict[bytes, tuple[asyncio.Future[Result], asyncio.TimerHandle, Addr, float]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.config = config
        self.client = client
        self.source_node = node
        self.storage = storage
        self.router = HnRoutingTable(self, config.ksize, node, config.per_ip_per_bucket)
        self.on_welcome = on_welcome
        self.rtt = RttEstimator(config.rpc_initial, config.rpc_floor, config.rpc_ceiling)
        self.dead = DeadPeers(config.dead_ttl)
        self.requests = RateLimiter(config.request_rate, config.request_burst)
        self.ip_requests = RateLimiter(config.request_rate * 20, config.request_burst * 20)
        self.stores = RateLimiter(config.store_rate, config.store_burst)
        self.late: BoundedDict[bytes, tuple[Addr, float, bytes | None]] = BoundedDict(4096)
        self.last_ok: BoundedDict[Addr, float] = BoundedDict(4096)
        self.proven: BoundedDict[Addr, bytes] = BoundedDict(4096)
        self.verifying: set[Addr] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stats: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        # rpcudp turns any unknown attribute into a remote call; a typo must stay an error.
        raise AttributeError(name)

    # -- inbound ----------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:  # a bug here must not kill the node; keep one line per kind
            self.stats["internal"] += 1
            if self.stats["internal"] <= 3:
                log.exception("dht: unexpected error on a datagram")

    def _datagram(self, data: bytes, addr: Addr) -> None:
        if not 22 <= len(data) <= MAX_DATAGRAM or data[0] not in (REQUEST, RESPONSE):
            self.stats["malformed"] += 1
            return
        msg_id = data[1:21]
        if data[0] == RESPONSE:
            self._response(msg_id, data[21:], addr)
            return
        if self.client:
            self.stats["ignored"] += 1
            return
        if not self.requests.allow(addr) or (not is_loopback(addr[0]) and not self.ip_requests.allow(addr[0])):
            self.stats["limited"] += 1
            return
        try:
            msg = umsgpack.unpackb(data[21:])
        except Exception:  # untrusted bytes: any decoder failure is just a malformed datagram
            self.stats["malformed"] += 1
            return
        if not (isinstance(msg, list) and len(msg) == 2 and isinstance(msg[0], str)
                and isinstance(msg[1], list) and ARITY.get(msg[0]) == len(msg[1])):
            self.stats["malformed"] += 1
            return
        name, args = msg
        if name == "stun":
            self._reply(msg_id, list(addr), addr)
            return
        node_id = args[0]
        if not valid_id(node_id) or (name != "ping" and not valid_id(args[1])):
            self.stats["malformed"] += 1
            return
        sender = Node(node_id, addr[0], addr[1])
        if name == "ping":
            answer: Any = self.source_node.id
        elif name == "store":
            if not self.stores.allow(addr) or (not is_loopback(addr[0]) and not self.stores.allow(addr[0])):
                self.stats["store_limited"] += 1
                answer = False
            else:
                verdict = self.storage.offer(args[1], args[2])
                self.stats["store_ok" if verdict.accepted else "store_refused"] += 1
                answer = verdict.accepted
        elif name == "find_node":
            answer = self.neighbours(args[1], sender)
        else:
            value = self.storage.get(args[1])
            answer = {"value": value} if value is not None else self.neighbours(args[1], sender)
        self._reply(msg_id, answer, addr)
        self.consider(sender)

    def neighbours(self, key: bytes, sender: Node) -> list[list[Any]]:
        found = self.router.find_neighbors(Node(key), exclude=sender)
        return [[n.id, n.ip, n.port] for n in found]

    def _reply(self, msg_id: bytes, answer: Any, addr: Addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(bytes([RESPONSE]) + msg_id + umsgpack.packb(answer), addr)

    def _response(self, msg_id: bytes, body: bytes, addr: Addr) -> None:
        entry = self._outstanding.get(msg_id)
        if entry is None:
            late = self.late.pop(msg_id, None)
            if late is not None and late[0] == addr:
                # The peer is alive, only slower than we guessed: learn from it.
                self.dead.clear(addr)
                self.rtt.sample(addr, time.monotonic() - late[1])
                self.stats["late"] += 1
                if late[2] is not None:
                    self.welcome(Node(late[2], addr[0], addr[1]))
            else:
                self.stats["unexpected"] += 1
            return
        future, handle, expected, started = entry
        if addr != expected:
            self.stats["spoofed"] += 1
            return
        try:
            data = umsgpack.unpackb(body)
        except Exception:  # a garbled answer counts as no answer
            self.stats["malformed"] += 1
            return
        del self._outstanding[msg_id]
        handle.cancel()
        self.rtt.sample(addr, time.monotonic() - started)
        self.dead.clear(addr)
        self.last_ok[addr] = time.monotonic()
        if not future.done():
            future.set_result((True, data))

    # -- outbound ---------------------------------------------------------------------
    def call(self, addr: Addr, name: str, *args: Any, timeout: float | None = None) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if self.transport is None or self.transport.is_closing():
            future.set_result((False, None))
            return future
        msg_id = os.urandom(20)
        self.stats["sent"] += 1
        wait = timeout if timeout is not None else self.rtt.timeout(addr)
        handle = loop.call_later(wait, self._expire, msg_id)
        self._outstanding[msg_id] = (future, handle, addr, time.monotonic())
        try:
            self.transport.sendto(bytes([REQUEST]) + msg_id + umsgpack.packb([name, list(args)]), addr)
        except OSError:
            self._expire(msg_id)
        return future

    def _expire(self, msg_id: bytes) -> None:
        entry = self._outstanding.pop(msg_id, None)
        if entry is None:
            return
        future, handle, addr, started = entry
        handle.cancel()
        self.late[msg_id] = (addr, started, self.router.id_at(addr))
        self.dead.mark(addr)
        self.router.remove_addr(addr)
        self.stats["timeouts"] += 1
        if not future.done():
            future.set_result((False, None))

    async def call_ping(self, node: Node, timeout: float | None = None) -> Result:
        ok, data = await self.call((node.ip, node.port), "ping", self.source_node.id, timeout=timeout)
        if not ok or not valid_id(data):
            return False, None
        self.proven[(node.ip, node.port)] = data
        self.welcome(Node(data, node.ip, node.port))
        return True, data

    def known_id(self, addr: Addr) -> bytes | None:
        """The id this address last proved (answered a ping with), else the routing table's."""
        return self.proven.get(addr) or self.router.id_at(addr)

    async def call_store(self, node: Node, key: bytes, value: bytes) -> Result:
        ok, data = await self.call((node.ip, node.port), "store", self.source_node.id, key, value)
        if ok:
            self.welcome(node)
        return ok, data is True

    async def call_find(self, node: Node, key: bytes, value: bool, *, verify: bool = False) -> Result:
        """(True, contacts) or (True, {"value": v}) or (False, None); contacts are validated.

        ``verify``: ``node`` is a contact some peer told us about, so its id is only a claim;
        a ping goes out with the request (same round trip) and the answer counts only if
        the address answers the ping with that id. Otherwise one hostile peer could list
        its friends under made-up ids next to any key and pass them off as its closest
        nodes (an eclipse).
        """
        rpc = "find_value" if value else "find_node"
        addr = (node.ip, node.port)
        request = self.call(addr, rpc, self.source_node.id, key)
        if verify:
            (ok, data), (pinged, real) = await asyncio.gather(request, self.call(addr, "ping", self.source_node.id))
            if pinged and valid_id(real):
                self.proven[addr] = real
            if ok and (not pinged or real != node.id):
                self.stats["false_ids"] += 1
                if pinged and valid_id(real):
                    self.welcome(Node(real, node.ip, node.port))
                return False, None
        else:
            ok, data = await request
        if not ok:
            return False, None
        self.welcome(node)
        if value and isinstance(data, dict):
            return True, {"value": data.get("value")}
        if not isinstance(data, list):
            self.stats["bad_answer"] += 1
            return True, []
        contacts = [c for c in (parse_contact(x) for x in data[:MAX_CONTACTS]) if c is not None]
        if len(contacts) != len(data):
            self.stats["bad_contacts"] += len(data) - len(contacts)
        return True, contacts

    async def call_find_node(self, node: Node, target: Node) -> Result:
        return await self.call_find(node, target.id, False)

    async def call_find_value(self, node: Node, target: Node) -> Result:
        return await self.call_find(node, target.id, True)

    # -- routing-table admission -------------------------------------------------------
    def welcome(self, node: Node) -> None:
        """``node`` answered us: it may enter the table; new close nodes get our records."""
        if self.client or node.id == self.source_node.id:
            return
        new = self.router.is_new_node(node)
        self.router.add_contact(node)
        if new and self.router.id_at((node.ip, node.port)) == node.id and self.on_welcome is not None:
            self.on_welcome(node)

    def consider(self, sender: Node) -> None:
        """A request's sender: known contacts are refreshed, new ones pinged back first."""
        addr = (sender.ip, sender.port)
        held = self.router.id_at(addr)
        if held == sender.id:
            self.router.add_contact(sender)
            return
        if (held is not None or addr in self.dead or addr in self.verifying
                or len(self.verifying) >= MAX_VERIFYING or not self.router.admissible(sender)):
            return
        self.verifying.add(addr)
        self.spawn(self._verify(sender))

    async def _verify(self, sender: Node) -> None:
        try:
            await self.call_ping(sender)
        finally:
            self.verifying.discard((sender.ip, sender.port))

    def ping_soon(self, node: Node) -> None:
        self.spawn(self.call_ping(node))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def welcome_if_new(self, node: Node) -> None:
        self.welcome(node)

    def handle_call_response(self, result: Result, node: Node) -> Result:
        if result[0]:
            self.welcome(node)
        return result

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for msg_id in list(self._outstanding):
            self._expire(msg_id)
