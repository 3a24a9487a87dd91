"""A friend's whole index held in memory with every level of its Merkle tree, so a refresh
that changes k entries recomputes only the nodes right of the first change instead of
the whole tree (and never re-reads the index from SQLite while the process lives).

Leaves are ordered by id (UTF-8 byte order); for the hex ids of index@2 that is string
order. The tree is RFC 6962's, built bottom-up: neighbours are paired and an odd last
node is carried up unchanged (see hn.proto.merkle.root_from_hashes).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from hn.proto import merkle

REBUILD_FRACTION = 8  # more changes than n / this: rebuild from scratch


def _relevel(old: list[list[bytes]], level0: list[bytes], first: int) -> list[list[bytes]]:
    """Levels over ``level0``, whose leaves before ``first`` equal those of ``old[0]``
    (``_relevel([], level0, 0)`` builds every level from scratch)."""
    levels = [level0]
    level = level0
    k, p = 0, first
    while len(level) > 1:
        start = p >> 1
        # Parents left of ``start`` only cover unchanged children.
        prev = old[k + 1] if k + 1 < len(old) else []
        nxt = prev[:min(start, len(prev))]
        for i in range(2 * len(nxt), len(level) - 1, 2):  # from the first changed pair on
            nxt.append(merkle.node_hash(level[i], level[i + 1]))
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level, p, k = nxt, min(start, len(prev)), k + 1
    return levels


class PeerIndex:
    """Sorted ids with their digests and Merkle levels; ``apply`` returns a new PeerIndex."""

    def __init__(self, ids: list[str], digests: list[str], levels: list[list[bytes]]) -> None:
        self.ids = ids
        self.digests = digests
        self.levels = levels

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]]) -> PeerIndex:
        ordered = sorted(pairs)
        ids = [i for i, _ in ordered]
        digests = [d for _, d in ordered]
        return cls(ids, digests, _relevel([], [merkle.leaf_hash(bytes.fromhex(d)) for d in digests], 0))

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def root(self) -> str:
        return (self.levels[-1][0] if self.ids else merkle.EMPTY_ROOT).hex()

    def apply(self, changes: Mapping[str, str | None]) -> PeerIndex:
        """The index after ``changes`` (id -> digest, or None to remove); self is unchanged."""
        if not changes:
            return self
        if len(changes) * REBUILD_FRACTION > max(1, len(self.ids)):
            current = dict(zip(self.ids, self.digests))
            for entry_id, digest in changes.items():
                if digest is None:
                    current.pop(entry_id, None)
                else:
                    current[entry_id] = digest
            return PeerIndex.build(current.items())
        ids, digests, leaves = list(self.ids), list(self.digests), list(self.levels[0])
        first = len(ids)
        for entry_id in sorted(changes):
            digest = changes[entry_id]
            pos = bisect.bisect_left(ids, entry_id)
            present = pos < len(ids) and ids[pos] == entry_id
            if digest is None:
                if not present:
                    continue
                del ids[pos], digests[pos], leaves[pos]
            elif present:
                if digests[pos] == digest:
                    continue
                digests[pos] = digest
                leaves[pos] = merkle.leaf_hash(bytes.fromhex(digest))
            else:
                ids.insert(pos, entry_id)
                digests.insert(pos, digest)
                leaves.insert(pos, merkle.leaf_hash(bytes.fromhex(digest)))
            first = min(first, pos)
        if first >= len(ids) and len(ids) == len(self.ids):
            return PeerIndex(ids, digests, self.levels)
        return PeerIndex(ids, digests, _relevel(self.levels, leaves, first))
