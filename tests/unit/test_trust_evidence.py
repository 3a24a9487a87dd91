"""Evidence resolution, link storage, expiry and selectors inside one vault (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hn.errors import InputError, UsageError, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.proto.signed import sign_document
from hn.trust import evidence, links, reputation, selectors
from hn.vault import identities, policy, shards, store
from hn.vault.home import Home
from hn.vault.identities import Identity


@pytest.fixture
def bob(tmp_path: Path) -> tuple[Home, Identity]:
    home = Home(tmp_path / "bob")
    home.ensure()
    return home, identities.create(home, "bob")


@pytest.fixture
def shared(home: Home, alice: Identity, bob: tuple[Home, Identity], tmp_path: Path) -> str:
    """alice knows bob and has sealed one document for him."""
    identities.import_contact(home, canonical(bob[1].doc))
    src = tmp_path / "note.txt"
    src.write_text("for bob")
    entry = store.add_files(home, alice.keys, [src], publish=False)[0]
    return str(shards.share(home, alice, entry["id"], bob[1].did)["id"])


def test_shard_evidence_collected_and_resolved(home: Home, alice: Identity, bob: tuple[Home, Identity],
                                               shared: str) -> None:
    found = evidence.collect(home, bob[1].did)
    assert [i.id for i in found] == [f"shard:{shared}"]
    item = evidence.resolve(home, f"shard:{shared}")
    assert item.peer == bob[1].did and item.digest == shared
    assert evidence.collect(home, alice.did) == []


def test_unresolvable_and_foreign_evidence_refused(home: Home, alice: Identity, bob: tuple[Home, Identity],
                                                   shared: str, tmp_path: Path) -> None:
    with pytest.raises(evidence.EvidenceError, match="does not resolve"):
        links.derive(home, alice, bob[1].did, [f"shard:{'0' * 64}"])
    with pytest.raises(evidence.EvidenceError, match="not of the form"):
        links.derive(home, alice, bob[1].did, ["contract:offer-bike"])
    carol = Home(tmp_path / "carol")
    carol.ensure()
    carol_id = identities.create(carol, "carol")
    with pytest.raises(evidence.EvidenceError, match=f"is about {bob[1].did}"):
        links.derive(home, alice, carol_id.did, [f"shard:{shared}"])
    with pytest.raises(evidence.EvidenceError, match="no evidence of cooperation"):
        links.derive(home, alice, carol_id.did)


def test_receipt_and_backup_evidence(home: Home, alice: Identity, bob: tuple[Home, Identity], shared: str) -> None:
    bob_id = bob[1]
    receipt = sign_document({"type": "receipt@1", "for": alice.did, "issued_at": "2026-01-05T08:00:00Z"},
                            bob_id.keys)
    (home.path("receipts") / "pay-0049.json").write_bytes(canonical(receipt))
    # A receipt whose signature does not verify is not evidence.
    forged = dict(receipt, **{"for": "someone else"})
    (home.path("receipts") / "forged.json").write_bytes(canonical(forged))
    with home.lock():
        home.append_event(alice.keys, "backup.push", {"id": "bk-1", "target": bob_id.did, "digest": "ab" * 32})
    ids = {i.id: i for i in evidence.collect(home, bob_id.did)}
    assert set(ids) == {f"shard:{shared}", "receipt:pay-0049", "backup:bk-1"}
    assert ids["receipt:pay-0049"].at == "2026-01-05T08:00:00Z"
    with pytest.raises(evidence.EvidenceError):
        evidence.resolve(home, "receipt:forged")
    link = links.derive(home, alice, bob_id.did)
    assert link.link["evidence_kinds"] == {"backup": 1, "receipt": 1, "shard": 1}


def test_mirror_evidence_must_still_match_its_digest(home: Home, alice: Identity, bob: tuple[Home, Identity]) -> None:
    import blake3

    data = b"bob's public file"
    digest = blake3.blake3(data).hexdigest()
    folder = home.path("cache", "federation", bob[1].did[7:], "artifacts", "doc")
    folder.mkdir(parents=True)
    (folder / digest).write_bytes(data)
    evidence_id = f"mirror:{bob[1].did[7:]}/doc/{digest}"
    assert evidence.resolve(home, evidence_id).peer == bob[1].did
    (folder / digest).write_bytes(b"substituted")
    with pytest.raises(evidence.EvidenceError, match="does not resolve"):
        evidence.resolve(home, evidence_id)
    assert evidence.collect(home, bob[1].did) == []


def test_override_recorded_and_bounded(home: Home, alice: Identity, bob: tuple[Home, Identity], shared: str) -> None:
    stored = links.derive(home, alice, bob[1].did, confidence=0.9, context="micropay")
    assert stored.link["confidence"] == 0.9
    assert stored.link["confidence_source"] == "override"
    assert stored.link["derived_confidence"] == 0.2
    with pytest.raises(UsageError, match="--confidence"):
        links.derive(home, alice, bob[1].did, confidence=1.5)
    with pytest.raises(UsageError, match="--context"):
        links.derive(home, alice, bob[1].did, context="Not Valid")
    with pytest.raises(UsageError, match="--to"):
        links.derive(home, alice, "did:hn:nope")
    with pytest.raises(UsageError, match="yourself"):
        links.derive(home, alice, alice.did)
    kinds = [e["kind"] for e in home.events()]
    assert kinds[-1] == "trust.link"


def test_links_expire_by_ttl_and_max_age(home: Home, alice: Identity, bob: tuple[Home, Identity], shared: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    start = timefmt.now()
    links.derive(home, alice, bob[1].did, ttl=3600)
    assert reputation.aggregate_about(home, alice, bob[1].did)["count"] == 1
    monkeypatch.setattr(timefmt, "now", lambda: start + 3601)
    mine, _ = links.my_links(home, alice)
    assert [s.live for s in mine] == [False]
    assert reputation.aggregate_about(home, alice, bob[1].did)["count"] == 0
    # A fresh long-lived link is cut short when the owner lowers trust.max_age.
    links.derive(home, alice, bob[1].did)
    assert reputation.aggregate_about(home, alice, bob[1].did)["count"] == 1
    policy.set_policy(home, "trust.max_age", "60")
    monkeypatch.setattr(timefmt, "now", lambda: start + 3601 + 61)
    assert reputation.aggregate_about(home, alice, bob[1].did)["count"] == 0
    with pytest.raises(UsageError, match="trust.max_age"):
        links.derive(home, alice, bob[1].did, ttl=120)


def test_reputation_seq_and_rederive(home: Home, alice: Identity, bob: tuple[Home, Identity], shared: str) -> None:
    links.derive(home, alice, bob[1].did)
    before = int(timefmt.now())
    first, changed, _ = reputation.compute(home, alice, bob[1].did)
    again, changed_again, _ = reputation.compute(home, alice, bob[1].did)
    assert changed and not changed_again and again == first
    # At least the Unix time of signing: a restored vault signs above what it published before.
    assert first["seq"] >= before
    links.derive(home, alice, bob[1].did, confidence=0.5, context="micropay")
    second, changed, _ = reputation.compute(home, alice, bob[1].did)
    assert changed and second["seq"] > first["seq"]
    assert second["aggregate"]["count"] == 2 and second["aggregate"]["max_confidence"] == 0.5
    published, _ = reputation.publish(home, alice, bob[1].did)
    assert published == second
    assert reputation.published_bytes(home, alice.alias, bob[1].did) == canonical(second)


def test_tampered_stored_link_refused(home: Home, alice: Identity, bob: tuple[Home, Identity], shared: str) -> None:
    stored = links.derive(home, alice, bob[1].did)
    path = links.link_path(home, alice, stored.link)
    body = path.read_bytes().replace(b'"confidence":0.2', b'"confidence":0.3', 1)
    path.write_bytes(body)
    with pytest.raises(VerificationError, match="refused"):
        links.my_links(home, alice)
    mine, refused = links.my_links(home, alice, strict=False)
    assert mine == [] and len(refused) == 1


# -- selectors -------------------------------------------------------------------------------
def test_selector_grammar() -> None:
    parsed = selectors.parse("reputation.avg_confidence >= 0.8 && reputation.count>=2")
    assert [(c.name, c.op, c.value) for c in parsed] == [
        ("reputation.avg_confidence", ">=", 0.8), ("reputation.count", ">=", 2.0)]
    for bad in ("reputation.avg>=1", "reputation.count=>2", "trust_link.confidence>=-1", "", "friends&&allow"):
        with pytest.raises(InputError):
            selectors.parse(bad)
    assert selectors.validate("friends") == "friends"


def test_selector_keywords(home: Home, alice: Identity, bob: tuple[Home, Identity], shared: str) -> None:
    did = bob[1].did
    policy.set_policy(home, "backup.accept", "friends")
    assert selectors.allows(home, "backup.accept", did)[0]  # a contact counts as a friend
    assert selectors.allows(home, "backup.accept", None) == (
        False, "policy backup.accept is 'friends': the request must be signed")
    policy.set_policy(home, "backup.accept", "allowlist")
    assert not selectors.allows(home, "backup.accept", did)[0]
    policy.set_policy(home, "backup.accept", "allow", did)
    assert selectors.allows(home, "backup.accept", did)[0]
    policy.set_policy(home, "backup.accept", "reputation.nonsense>1", "*")
    ok, reason = selectors.allows(home, "backup.accept", "did:hn:" + "a" * 32)
    assert not ok and "not understood" in reason
