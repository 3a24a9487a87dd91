"""index@2 vectors (spec/vectors/index@2.json): the code must reproduce them byte for byte,
accept the valid slices and refuse each invalid one with its reason.

Regenerate after a deliberate format change: python -m tests.unit.test_index_vectors
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest

from hn.errors import HnError
from hn.proto import merkle
from hn.proto.canonical import canonical, doc_digest, loads_canonical
from hn.proto.identity import build_identity, make_key_entry, verify_identity
from hn.proto.index import (
    build_slice,
    entry_leaf,
    format_cursor,
    index_root,
    parse_cursor,
    slice_root,
    tombstone,
    verify_slice,
)
from hn.proto.keys import IdentityKeys
from hn.proto.presence import PRESENCE_TYPE
from hn.proto.signed import sign_document

VECTOR = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "index@2.json"
SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(100, 132))
SOURCE = "http://127.0.0.1:7733"
ISSUED = "2026-01-01T00:00:00Z"


def _doc(content: bytes, name: str) -> dict[str, Any]:
    digest = blake3.blake3(content).hexdigest()
    return {"type": "doc", "id": digest, "path": f"doc/{digest}", "digest": digest, "size": len(content),
            "metadata": {"media_type": "text/plain", "name": name}}


def _identity(keys: IdentityKeys) -> dict[str, Any]:
    return build_identity(keys, "vector", [make_key_entry(keys, 0, "2020-01-01T00:00:00Z", None)], ISSUED)


def build_vectors() -> dict[str, Any]:
    keys = IdentityKeys(SECRET, 0)
    ident = _identity(keys)
    a, b, c = _doc(b"alpha\n", "a.txt"), _doc(b"beta\n", "b.txt"), _doc(b"gamma\n", "c.txt")
    gone = _doc(b"deleted\n", "gone.txt")
    shard_id = blake3.blake3(b"shard header").hexdigest()
    shard = {"type": "shard", "id": shard_id, "path": f"shard/{shard_id}", "digest": blake3.blake3(b"x").hexdigest(),
             "size": 1, "metadata": {"recipient": keys.did}}
    # The change order (seq, id): a and b published at seq 3, gone published at seq 4 and
    # unpublished at seq 6 (a tombstone), c at seq 5, the shard at seq 6.
    changes = sorted([((3, a["id"]), a), ((3, b["id"]), b), ((5, c["id"]), c), ((6, shard_id), shard),
                      ((6, gone["id"]), tombstone("doc", gone["id"]))], key=lambda kv: kv[0])
    live = sorted([a, b, c, shard], key=lambda e: e["id"].encode())
    presence = sign_document({
        "type": PRESENCE_TYPE, "did": keys.did, "seq": 4, "issued_at": ISSUED, "expires_at": "2026-01-08T00:00:00Z",
        "url": SOURCE, "index": {"root": index_root(live), "size": len(live), "cursor": 6},
        "hpke_public_key": ident["hpke_public_key"], "identity_digest": doc_digest(ident), "relays": [],
    }, keys)
    slices = []
    cursor = "0"
    start = 0
    for limit in (2, 5000):
        taken = changes[start:start + limit]
        more = start + limit < len(changes)
        next_cursor = format_cursor(taken[-1][0]) if more else format_cursor((changes[-1][0][0], "\uffff"))
        doc = build_slice(keys, SOURCE, presence, cursor, next_cursor, more, [e for _, e in taken], ISSUED)
        slices.append({"cursor": cursor, "limit": limit, "doc": doc, "canonical": canonical(doc).decode(),
                       "digest": doc_digest(doc),
                       "leaf_hashes": [entry_leaf(e).hex() for e in doc["entries"]]})
        cursor, start = next_cursor, start + limit
    first = slices[0]["doc"]
    invalid = _invalid(first, presence, keys)
    return {
        "description": "index@2 slices by the identity of identity.json (secret 000102…1f); the index has "
                       "two docs published at seq 3, one at seq 5, a shard at seq 6 and a tombstone at seq 6; "
                       "the first slice is paginated at 2 entries",
        "secret_hex": SECRET.hex(),
        "identity": ident,
        "presence": presence,
        "full_index": {"entries": live, "root": index_root(live), "size": len(live),
                       "leaves": [e["digest"] for e in live]},
        "slices": slices,
        "cursors": [{"text": t, "position": list(parse_cursor(t)) if "-" in t else [int(t), "all"]}
                    for t in ("0", "6", f"3-{b['id']}")],
        "invalid": invalid,
    }


def _resign(doc: dict[str, Any], keys: IdentityKeys, **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k not in ("signer", "key_seq", "signature")}
    body.update(changes)
    return sign_document(body, keys)


def _invalid(first: dict[str, Any], presence: dict[str, Any], keys: IdentityKeys) -> list[dict[str, Any]]:
    tampered_entries = [dict(e) for e in first["entries"]]
    tampered_entries[0]["size"] += 1
    traversal = dict(first["entries"][0], path="../../../etc/passwd")
    other = IdentityKeys(OTHER_SECRET, 0)
    return [
        {"name": "entry changed after signing", "error": "signature does not verify",
         "doc": dict(first, entries=tampered_entries)},
        {"name": "entries re-signed but slice root left stale", "error": "slice Merkle root",
         "doc": _resign(first, keys, entries=tampered_entries)},
        {"name": "made for another presence", "error": "presence digest mismatch",
         "doc": _resign(first, keys, presence_digest="00" * 32)},
        {"name": "index root differs from the presence", "error": "index_root differs",
         "doc": _resign(first, keys, index_root="11" * 32)},
        {"name": "tree size differs from the presence", "error": "tree_size differs",
         "doc": _resign(first, keys, tree_size=99)},
        {"name": "path traversal in an entry", "error": "path traversal refused",
         "doc": _resign(first, keys, entries=[traversal], slice_root=slice_root([traversal]))},
        {"name": "signed by another key", "error": "publisher differs",
         "doc": _resign(first, other, publisher=other.did)},
        {"name": "entries out of order", "error": "sorted by id",
         "doc": _resign(first, keys, entries=first["entries"][::-1],
                        slice_root=slice_root(first["entries"][::-1]))},
        {"name": "presence type instead of index", "error": "expected a index@2 document",
         "doc": presence},
    ]


def load() -> dict[str, Any]:
    return json.loads(VECTOR.read_text("utf-8"))  # type: ignore[no-any-return]


def test_vectors_reproduced_byte_for_byte() -> None:
    assert load() == json.loads(json.dumps(build_vectors())), \
        "spec/vectors/index@2.json is stale: regenerate with python -m tests.unit.test_index_vectors"


def test_valid_slices_verify_and_rebuild_the_index() -> None:
    data = load()
    history = verify_identity(data["identity"])
    presence = data["presence"]
    held: dict[str, dict[str, Any] | None] = {}
    for item in data["slices"]:
        raw = item["canonical"].encode()
        doc = loads_canonical(raw)
        verify_slice(doc, history, presence)
        assert doc_digest(doc) == item["digest"]
        assert [entry_leaf(e).hex() for e in doc["entries"]] == item["leaf_hashes"]
        assert merkle.root([bytes.fromhex(h) for h in item["leaf_hashes"]]).hex() == doc["slice_root"]
        for entry in doc["entries"]:
            held[entry["id"]] = None if entry["type"] == "tombstone" else entry
    live = sorted((e for e in held.values() if e is not None), key=lambda e: e["id"].encode())
    assert index_root(live) == presence["index"]["root"] == data["full_index"]["root"]
    assert len(live) == presence["index"]["size"]
    assert data["slices"][0]["doc"]["more"] is True and data["slices"][-1]["doc"]["more"] is False
    assert data["slices"][1]["cursor"] == data["slices"][0]["doc"]["next_cursor"]


@pytest.mark.parametrize("name", [c["name"] for c in build_vectors()["invalid"]])
def test_invalid_slices_refused(name: str) -> None:
    data = load()
    case = next(c for c in data["invalid"] if c["name"] == name)
    history = verify_identity(data["identity"])
    with pytest.raises(HnError) as info:
        verify_slice(case["doc"], history, data["presence"])
    assert case["error"] in info.value.message


def test_cursor_vectors() -> None:
    for item in load()["cursors"]:
        pos = parse_cursor(item["text"])
        assert format_cursor(pos) == item["text"]
        if item["position"][1] != "all":
            assert list(pos) == item["position"]


if __name__ == "__main__":
    VECTOR.write_text(json.dumps(build_vectors(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {VECTOR}")
