"""trust_link@1 and reputation@1: vectors, the confidence function, the aggregate, tampering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hn.errors import HnError, MalformedDocument, VerificationError
from hn.proto import trust as proto
from hn.proto.canonical import canonical, doc_digest, loads_canonical
from hn.proto.identity import KeyHistory, verify_identity
from hn.proto.keys import IdentityKeys
from hn.proto.presence import PRESENCE_TYPE
from hn.proto.signed import sign_document
from hn.vault.home import Home
from hn.vault.identities import create_with_secret

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "spec" / "vectors" / "trust.json").read_text())


def _keys(name: str) -> IdentityKeys:
    return IdentityKeys(bytes.fromhex(VECTORS["secrets"][name]), 0)


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyHistory]:
    home = Home(tmp_path_factory.mktemp("vectors"))
    home.ensure()
    out = {}
    for name, secret in VECTORS["secrets"].items():
        ident = create_with_secret(home, name, bytes.fromhex(secret))
        out[name] = verify_identity(ident.doc)
    return out


def test_vector_dids() -> None:
    for name, did in VECTORS["dids"].items():
        assert _keys(name).did == did


def test_link_vector_rebuilds_byte_for_byte(histories: dict[str, KeyHistory]) -> None:
    vec = VECTORS["link"]
    rebuilt = proto.build_link(_keys("alice"), VECTORS["dids"]["bob"], VECTORS["evidence"], context="general",
                               ttl_seconds=2592000, issued_at="2026-01-11T00:00:00Z")
    assert canonical(rebuilt).decode() == vec["canonical"]
    assert doc_digest(rebuilt) == vec["digest"]
    doc = loads_canonical(vec["canonical"].encode())
    proto.verify_link(doc, histories["alice"])
    proto.verify_link_evidence(doc, VECTORS["evidence"])
    assert doc["evidence_digest"] == VECTORS["evidence_digest"]


def test_override_vector_records_the_override(histories: dict[str, KeyHistory]) -> None:
    doc = loads_canonical(VECTORS["override_link"]["canonical"].encode())
    proto.verify_link(doc, histories["carol"])
    assert doc["confidence"] == 0.75 and doc["confidence_source"] == "override"
    shard = [e for e in VECTORS["evidence"] if e["id"] == "shard:" + "a1" * 32]
    assert doc["derived_confidence"] == proto.derive_confidence(shard) == 0.2


def test_reputation_vector(histories: dict[str, KeyHistory]) -> None:
    vec = VECTORS["reputation"]
    link = VECTORS["link"]["document"]
    body = proto.reputation_body(VECTORS["dids"]["carol"], VECTORS["dids"]["bob"], [link], "trust.max_age=2592000")
    rebuilt = proto.sign_reputation(_keys("carol"), body, 1, "2026-01-12T00:00:00Z")
    assert canonical(rebuilt).decode() == vec["canonical"]
    proto.verify_reputation(loads_canonical(vec["canonical"].encode()), histories["carol"])


@pytest.mark.parametrize("case", VECTORS["confidence_cases"], ids=lambda c: c["description"])
def test_confidence_cases(case: dict[str, Any]) -> None:
    assert proto.derive_confidence(case["evidence"]) == case["confidence"]


@pytest.mark.parametrize("case", VECTORS["aggregate_cases"], ids=lambda c: str(c["confidences"]))
def test_aggregate_cases(case: dict[str, Any]) -> None:
    assert proto.aggregate(case["confidences"]) == case["aggregate"]


# -- tampering and domain separation ---------------------------------------------------------
@pytest.mark.parametrize("field,value", [
    ("confidence", 0.99), ("to", VECTORS["dids"]["carol"]), ("ttl_seconds", 315360000),
    ("evidence_digest", "00" * 32), ("issued_at", "2027-01-01T00:00:00Z"), ("context", "micropay"),
])
def test_tampered_link_refused(histories: dict[str, KeyHistory], field: str, value: Any) -> None:
    doc = dict(VECTORS["link"]["document"], **{field: value})
    with pytest.raises(HnError):
        proto.verify_link(doc, histories["alice"])


def test_evidence_swapped_under_a_link_is_refused() -> None:
    doc = VECTORS["link"]["document"]
    other = [dict(VECTORS["evidence"][0], at="2026-01-10T12:00:01Z")] + VECTORS["evidence"][1:]
    with pytest.raises(VerificationError, match="evidence does not match"):
        proto.verify_link_evidence(doc, other)
    with pytest.raises(VerificationError):
        proto.verify_link_evidence(doc, VECTORS["evidence"][:-1])


def test_link_signed_by_someone_else_refused(histories: dict[str, KeyHistory]) -> None:
    with pytest.raises(VerificationError):
        proto.verify_link(VECTORS["link"]["document"], histories["carol"])


def test_signatures_do_not_cross_types(histories: dict[str, KeyHistory]) -> None:
    link = VECTORS["link"]["document"]
    rep = VECTORS["reputation"]["document"]
    with pytest.raises(VerificationError):
        proto.verify_reputation(link, histories["alice"])
    with pytest.raises(VerificationError):
        proto.verify_link(rep, histories["carol"])
    # The same fields signed as another type never pass as a link.
    forged = sign_document(dict(link, type=PRESENCE_TYPE), _keys("alice"))
    with pytest.raises(VerificationError):
        proto.verify_link(dict(forged, type=proto.LINK_TYPE), histories["alice"])


def test_inflated_aggregate_refused_even_when_signed(histories: dict[str, KeyHistory]) -> None:
    body = {k: v for k, v in VECTORS["reputation"]["document"].items()
            if k not in ("seq", "issued_at", "signer", "key_seq", "signature")}
    body["aggregate"] = dict(body["aggregate"], avg_confidence=1)
    doc = proto.sign_reputation(_keys("carol"), body, 2, "2026-01-12T00:00:00Z")
    with pytest.raises(VerificationError, match="aggregate does not follow"):
        proto.verify_reputation(doc, histories["carol"])


def test_expired_link_refused_when_now_is_given(histories: dict[str, KeyHistory]) -> None:
    doc = VECTORS["link"]["document"]
    issued = 1768089600.0  # 2026-01-11T00:00:00Z
    proto.verify_link(doc, histories["alice"], now=issued + 2592000 - 1)
    with pytest.raises(VerificationError, match="expired"):
        proto.verify_link(doc, histories["alice"], now=issued + 2592000)
    # The reader's max age shortens a long ttl.
    with pytest.raises(VerificationError, match="expired"):
        proto.verify_link(doc, histories["alice"], now=issued + 3600, max_age=3600)


def test_malformed_evidence_refused() -> None:
    good = VECTORS["evidence"][0]
    for bad in (dict(good, kind="mirror"), dict(good, id="contract:1", kind="contract"),
                dict(good, digest="xyz"), dict(good, at="yesterday"), dict(good, extra=1)):
        with pytest.raises(MalformedDocument):
            proto.normalise_evidence([bad])
    with pytest.raises(MalformedDocument, match="twice"):
        proto.normalise_evidence([good, good])


# -- properties of the confidence function -----------------------------------------------------
_kinds = st.sampled_from(sorted(proto.KIND_WEIGHTS))
_items = st.lists(st.tuples(_kinds, st.integers(0, 10**6), st.integers(1_700_000_000, 1_800_000_000)),
                  max_size=30, unique_by=lambda t: (t[0], t[1]))


def _evidence(raw: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    from hn.proto import timefmt

    out = []
    for kind, n, ts in raw:
        ref = f"ab/doc/{n:064x}" if kind == "mirror" else f"{n:064x}"
        out.append({"id": f"{kind}:{ref}", "kind": kind, "at": timefmt.fmt(ts), "digest": f"{n:064x}"})
    return out


@settings(max_examples=150, deadline=None)
@given(_items, st.randoms())
def test_confidence_in_range_and_order_free(raw: list[tuple[str, int, int]], rnd: Any) -> None:
    items = _evidence(raw)
    value = proto.derive_confidence(items)
    assert 0.0 <= value <= 1.0
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert proto.derive_confidence(shuffled) == value


@settings(max_examples=100, deadline=None)
@given(_items, _kinds, st.integers(10**6 + 1, 2 * 10**6))
def test_more_fresh_evidence_never_lowers_confidence(raw: list[tuple[str, int, int]], kind: str, n: int) -> None:
    items = _evidence(raw)
    if not items:
        return
    newest = max(i["at"] for i in items)
    extra = _evidence([(kind, n, 0)])[0]
    extra["at"] = newest
    assert proto.derive_confidence(items + [extra]) >= proto.derive_confidence(items)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), max_size=50))
def test_aggregate_bounds(values: list[float]) -> None:
    agg = proto.aggregate(values)
    assert agg["count"] == len(values)
    if values:
        assert agg["min_confidence"] <= agg["avg_confidence"] <= agg["max_confidence"]
        assert 0 <= agg["stddev"] <= 0.5
    assert proto.aggregate(list(reversed(values))) == agg
