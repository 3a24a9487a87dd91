"""The routing table: kademlia's k-buckets with a correct neighbour search and per-source caps.

The stock table's ``find_neighbors`` walks buckets outward from the target's bucket and
stops after k contacts, which misses closer contacts in other buckets (XOR distance is
not ordered by bucket position); here every contact is ranked. The stock
``get_bucket_for`` also misplaces an id equal to a split point. One address holds one
node id, and one IP at most ``per_ip`` contacts per bucket (loopback excepted, where every
local test peer shares 127.0.0.1), so a single host cannot fill the table with fake ids.
"""

from __future__ import annotations

import bisect
import heapq
from typing import Any

from kademlia.node import Node
from kademlia.routing import KBucket, RoutingTable

from hn.dht.limits import is_loopback

Addr = tuple[str, int]


class HnRoutingTable(RoutingTable):  # type: ignore[misc]
    def __init__(self, protocol: Any, ksize: int, node: Node, per_ip: int = 2) -> None:
        self.per_ip = per_ip
        self.by_addr: dict[Addr, bytes] = {}
        super().__init__(protocol, ksize, node)

    def flush(self) -> None:
        self.buckets = [KBucket(0, 2**160, self.ksize)]
        self.by_addr = {}

    def split_bucket(self, index: int) -> None:
        super().split_bucket(index)
        # A split may promote replacement contacts: rebuild the address index.
        self.by_addr = {}
        for bucket in self.buckets:
            for node_id, node in list(bucket.nodes.items()):
                if (node.ip, node.port) in self.by_addr:
                    del bucket.nodes[node_id]
                else:
                    self.by_addr[(node.ip, node.port)] = node_id

    def get_bucket_for(self, node: Node) -> int:
        uppers = [b.range[1] for b in self.buckets]
        return min(bisect.bisect_left(uppers, node.long_id), len(self.buckets) - 1)

    def contacts(self) -> list[Node]:
        out: list[Node] = []
        for bucket in self.buckets:
            out.extend(bucket.nodes.values())
        return out

    def __len__(self) -> int:
        return sum(len(b.nodes) for b in self.buckets)

    def id_at(self, addr: Addr) -> bytes | None:
        return self.by_addr.get(addr)

    def admissible(self, node: Node) -> bool:
        """May ``node`` enter the table (address not taken by another id, IP under its cap)?"""
        if node.id == self.node.id:
            return False
        held = self.by_addr.get((node.ip, node.port))
        if held is not None and held != node.id:
            return False
        if self.per_ip and not is_loopback(node.ip):
            bucket = self.buckets[self.get_bucket_for(node)]
            if node.id not in bucket.nodes:
                same_ip = sum(1 for n in bucket.nodes.values() if n.ip == node.ip)
                if same_ip >= self.per_ip:
                    return False
        return True

    def add_contact(self, node: Node) -> None:
        if not self.admissible(node):
            return
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        if bucket.add_node(node):
            self.by_addr[(node.ip, node.port)] = node.id
            return
        if bucket.has_in_range(self.node) or bucket.depth() % 5 != 0:
            self.split_bucket(index)
            self.add_contact(node)
        else:
            # Full far bucket: check the oldest contact; a dead one makes room (the
            # stock behaviour, kept: long-lived contacts are preferred).
            self.protocol.ping_soon(bucket.head())

    def remove_contact(self, node: Node) -> None:
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        held = bucket.nodes.get(node.id)
        if held is None:
            bucket.replacement_nodes.pop(node.id, None)
            return
        self.by_addr.pop((held.ip, held.port), None)
        del bucket.nodes[node.id]
        # Promote the newest replacement whose address is still free.
        while bucket.replacement_nodes:
            _, candidate = bucket.replacement_nodes.popitem()
            if self.by_addr.get((candidate.ip, candidate.port)) is None:
                bucket.nodes[candidate.id] = candidate
                self.by_addr[(candidate.ip, candidate.port)] = candidate.id
                break

    def remove_addr(self, addr: Addr) -> None:
        held = self.by_addr.get(addr)
        if held is not None:
            self.remove_contact(Node(held, addr[0], addr[1]))

    def find_neighbors(self, node: Node, k: int | None = None, exclude: Node | None = None) -> list[Node]:
        k = k or self.ksize
        target = node.long_id
        candidates = (
            n for n in self.contacts()
            if n.id != node.id and (exclude is None or not n.same_home_as(exclude))
        )
        return heapq.nsmallest(k, candidates, key=lambda n: n.long_id ^ target)
