from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hn.proto import merkle

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "merkle.json"


def leaves_for(n: int) -> list[bytes]:
    return [bytes([i]) * 32 for i in range(n)]


def recursive_root(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k << 1 < len(hashes):
        k <<= 1
    return merkle.node_hash(recursive_root(hashes[:k]), recursive_root(hashes[k:]))


def test_vectors_reproduce() -> None:
    data = json.loads(VECTORS.read_text())
    assert data["cases"], "no vectors"
    for case in data["cases"]:
        leaves = [bytes.fromhex(x) for x in case["leaves"]]
        assert merkle.root(leaves).hex() == case["root"]
        for proof in case["proofs"]:
            path = [bytes.fromhex(x) for x in proof["path"]]
            assert [p.hex() for p in merkle.inclusion_proof(leaves, proof["index"])] == proof["path"]
            assert merkle.verify_inclusion(leaves[proof["index"]], proof["index"], len(leaves), path,
                                           bytes.fromhex(case["root"]))


def test_empty_tree_is_hash_of_nothing() -> None:
    import blake3

    assert merkle.root([]) == blake3.blake3(b"").digest()


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 70), st.data())
def test_iterative_root_matches_rfc6962_recursion(n: int, data: st.DataObject) -> None:
    leaves = [data.draw(st.binary(min_size=32, max_size=32)) for _ in range(n)]
    assert merkle.root(leaves) == recursive_root([merkle.leaf_hash(x) for x in leaves])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.data())
def test_every_proof_mutation_rejected(n: int, data: st.DataObject) -> None:
    leaves = [bytes([i % 256, n]) * 16 for i in range(n)]
    index = data.draw(st.integers(0, n - 1))
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, index)
    assert merkle.verify_inclusion(leaves[index], index, n, proof, root)
    # another leaf, index or size
    assert not merkle.verify_inclusion(b"\xff" * 32, index, n, proof, root)
    if n > 1:
        assert not merkle.verify_inclusion(leaves[index], (index + 1) % n, n, proof, root)
    # The tree size travels signed beside the root (presence@2 index.size, index@2 tree_size);
    # an index outside the tree never verifies.
    assert not merkle.verify_inclusion(leaves[index], n, n, proof, root)
    # flip a bit of any element
    for i in range(len(proof)):
        for bit in (0, 7, 255):
            mutated = list(proof)
            element = bytearray(mutated[i])
            element[bit // 8] ^= 1 << (bit % 8)
            mutated[i] = bytes(element)
            assert not merkle.verify_inclusion(leaves[index], index, n, mutated, root)
    # drop, add, swap siblings
    if proof:
        assert not merkle.verify_inclusion(leaves[index], index, n, proof[:-1], root)
        assert not merkle.verify_inclusion(leaves[index], index, n, proof + [proof[0]], root)
    if len(proof) > 1 and proof[0] != proof[1]:
        swapped = [proof[1], proof[0], *proof[2:]]
        assert not merkle.verify_inclusion(leaves[index], index, n, swapped, root)
    # a leaf hash never passes as a node (0x00 / 0x01 prefixes)
    assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, n, proof, root)
