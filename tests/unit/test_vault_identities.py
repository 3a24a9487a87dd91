from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hn.errors import ForkError, InputError, KeyFileError, NoIdentity, NotFound, RollbackError, VerificationError
from hn.proto.canonical import canonical
from hn.proto.identity import build_identity, make_key_entry
from hn.proto.keys import IdentityKeys
from hn.vault import identities, recovery
from hn.vault.home import Home
from hn.vault.identities import Identity
from hn.vault.verify import verify_vault


def own(home: Home, alias: str, name: str) -> Path:
    return home.path("identities", "own", alias, name)


def test_create_keys_and_permissions(home: Home, alice: Identity) -> None:
    assert alice.did.startswith("did:hn:") and alice.keys.key_seq == 0
    assert identities.active_alias(home) == "alice"
    assert stat.S_IMODE(own(home, "alice", "secret.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.path("identities").stat().st_mode) == 0o700
    assert alice.history.current.hpke_public_key != alice.history.current.signing_public_key
    assert [e["kind"] for e in home.events()] == ["identity.create"]
    second = identities.create(home, "work")
    assert identities.active_alias(home) == "alice" and second.did != alice.did
    with pytest.raises(InputError, match="already exists"):
        identities.create(home, "alice")
    with pytest.raises(InputError, match="invalid alias"):
        identities.create(home, "../x")


def test_missing_and_unknown_identity(tmp_path: Path) -> None:
    home = Home(tmp_path / "empty")
    home.ensure()
    with pytest.raises(NoIdentity):
        identities.load(home)
    identities.create(home, "alice")
    with pytest.raises(NotFound, match="no identity with alias 'bob'"):
        identities.load(home, "bob")


@pytest.mark.parametrize("damage", [
    b"{not json",
    b'{"type":"identity_secret@1","secret":"AAAA","key_seq":0}',
])
def test_unreadable_key_file(home: Home, alice: Identity, damage: bytes) -> None:
    own(home, "alice", "secret.json").write_bytes(damage)
    with pytest.raises(KeyFileError, match="key file of 'alice'"):
        identities.load(home)


def test_key_file_of_another_identity(home: Home, alice: Identity) -> None:
    other = identities.create(home, "work")
    own(home, "alice", "secret.json").write_bytes(own(home, "work", "secret.json").read_bytes())
    with pytest.raises(KeyFileError, match="key file of 'alice'"):
        identities.load(home, "alice")
    assert identities.load(home, "work").did == other.did


def test_tampered_identity_file(home: Home, alice: Identity) -> None:
    path = own(home, "alice", "identity.json")
    path.write_bytes(path.read_bytes().replace(b'"alias":"alice"', b'"alias":"mallory"'))
    with pytest.raises(KeyFileError, match="tampered"):
        identities.load(home)


def test_rotation_keeps_old_events_valid(home: Home, alice: Identity) -> None:
    rotated = identities.rotate(home)
    assert rotated.keys.key_seq == 1 and rotated.did == alice.did
    assert rotated.history.keys[0].signing_public_key == alice.history.current.signing_public_key
    assert [e["key_seq"] for e in home.events()] == [0, 1]
    assert verify_vault(home).ok
    twice = identities.rotate(home)
    assert len(twice.history.keys) == 3 and verify_vault(home).ok


def test_interrupted_rotation_keeps_the_published_key(home: Home, alice: Identity) -> None:
    """secret.json one key ahead of identity.json: the rotation never committed."""
    keys = IdentityKeys(alice.keys.secret, 1)
    identities._write_secret(own(home, "alice", ""), keys)
    loaded = identities.load(home)
    assert loaded.keys.key_seq == 0 and loaded.history.current.seq == 0
    assert identities.rotate(home).keys.key_seq == 1


def test_contact_import_rollback_fork_and_update(home: Home, alice: Identity, tmp_path: Path) -> None:
    bob_home = Home(tmp_path / "bob")
    bob_home.ensure()
    bob = identities.create(bob_home, "bob")
    v0 = own(bob_home, "bob", "identity.json").read_bytes()
    assert identities.import_contact(home, v0).did == bob.did
    identities.rotate(bob_home)
    v1 = own(bob_home, "bob", "identity.json").read_bytes()
    assert len(identities.import_contact(home, v1).keys) == 2
    pinned = identities.contact_path(home, bob.did).read_bytes()
    with pytest.raises(RollbackError):
        identities.import_contact(home, v0)
    # a fork: key 1 made again with another date (same secret, different entry)
    keys1 = IdentityKeys(bob.keys.secret, 1)
    entries = [bob.history.entries[0], make_key_entry(keys1, 1, "2030-01-01T00:00:00Z", bob.history.entries[0])]
    with pytest.raises(ForkError):
        identities.import_contact(home, canonical(build_identity(keys1, "bob", entries, "2030-01-01T00:00:00Z")))
    assert identities.contact_path(home, bob.did).read_bytes() == pinned
    with pytest.raises(InputError, match="not an identity@1"):
        identities.import_contact(home, b'{"a":1,"a":2}')
    assert verify_vault(home).ok


def test_recovery_rebuilds_every_key(home: Home, alice: Identity, tmp_path: Path) -> None:
    identities.rotate(home)
    rotated = identities.load(home)
    shares = recovery.split(home, rotated, 2, 3)
    fresh = Home(tmp_path / "fresh")
    restored = recovery.restore(fresh, [shares[2], shares[0]], "alice", rotated.doc)
    assert restored.did == alice.did and restored.keys.key_seq == 1
    assert restored.history.current == rotated.history.current
    bare = recovery.restore(Home(tmp_path / "bare"), shares[:2], "alice")
    assert bare.history.entries[0] == rotated.history.entries[0]
    with pytest.raises(InputError, match="could not recover"):
        recovery.restore(Home(tmp_path / "short"), shares[:1], "alice")
    stranger = identities.create(Home(tmp_path / "s"), "s")
    with pytest.raises(VerificationError, match="another DID"):
        recovery.restore(Home(tmp_path / "wrong"), shares[:2], "alice", stranger.doc)
