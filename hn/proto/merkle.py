"""RFC 6962 section 2.1 Merkle trees with BLAKE3 in place of SHA-256.

leaf hash = H(0x00 || leaf), node hash = H(0x01 || left || right), the split at the
largest power of two smaller than n, and the empty tree hashes to H(""). Leaves are
the 32 raw bytes of artefact digests ordered by artefact id.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

EMPTY_ROOT = blake3.blake3(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return blake3.blake3(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_from_hashes(level: list[bytes]) -> bytes:
    """Root over already leaf-hashed values.

    Pairing neighbours bottom-up and carrying an odd last node up unchanged builds the
    same left-balanced tree as RFC 6962's recursive split, without recursion.
    """
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(leaves: Sequence[bytes]) -> bytes:
    return root_from_hashes([leaf_hash(leaf) for leaf in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 6962 audit path PATH(index, leaves)."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return _path(index, hashes)


def _path(m: int, hashes: list[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = _largest_power_of_two_below(n)
    if m < k:
        return _path(m, hashes[:k]) + [root_from_hashes(hashes[k:])]
    return _path(m - k, hashes[k:]) + [root_from_hashes(hashes[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2 inclusion verification."""
    if not 0 <= index < size:
        return False
    if any(len(p) != 32 for p in proof):
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
