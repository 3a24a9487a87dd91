"""Identities kept in the vault (own, with secrets) and contacts (public identity@1)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hn.errors import (
    InputError,
    KeyFileError,
    MalformedDocument,
    NoIdentity,
    NotFound,
    RollbackError,
    VerificationError,
)
from hn.proto import timefmt
from hn.proto.canonical import b64d, b64e, canonical, doc_digest, loads_canonical, loads_strict
from hn.proto.identity import KeyHistory, accept_update, build_identity, make_key_entry, verify_identity
from hn.proto.keys import SECRET_BYTES, IdentityKeys, is_did
from hn.vault import atomic
from hn.vault.home import Home

ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SECRET_TYPE = "identity_secret@1"
# The genesis key entry carries a fixed date so that it is a pure function of the secret:
# an identity recovered without its key history is a prefix of the real one, never a fork.
GENESIS_CREATED_AT = "2020-01-01T00:00:00Z"


@dataclass(frozen=True)
class Identity:
    alias: str
    doc: dict[str, Any]
    history: KeyHistory
    keys: IdentityKeys

    @property
    def did(self) -> str:
        return self.history.did

    def public_info(self) -> dict[str, Any]:
        current = self.history.current
        return {
            "alias": self.alias,
            "did": self.did,
            "key_seq": current.seq,
            "signing_public_key": b64e(current.signing_public_key),
            "hpke_public_key": b64e(current.hpke_public_key),
            "keys": len(self.history.keys),
            "identity_digest": doc_digest(self.doc),
        }


def did_tail(did: str) -> str:
    if not is_did(did):
        raise InputError(f"not a did:hn DID: {did!r}")
    return did[7:]


def _invalid_alias(alias: str) -> InputError:
    return InputError(f"invalid alias {alias!r}: start with a letter or a digit, then use letters, digits, "
                      "'.', '_' or '-' (at most 64 characters)")


def check_alias(alias: str) -> str:
    """A new alias: the whole of it matches ALIAS_RE (a trailing newline included)."""
    if not ALIAS_RE.fullmatch(alias):
        raise _invalid_alias(alias)
    return alias


def _own_dir(home: Home, alias: str) -> Path:
    # An existing folder is read by the name it has; a name that is no folder of
    # identities/own (a path, an empty name) is refused.
    if not ALIAS_RE.match(alias):
        raise _invalid_alias(alias)
    return home.path("identities", "own", alias)


def own_aliases(home: Home) -> list[str]:
    folder = home.path("identities", "own")
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "identity.json").exists())


def active_alias(home: Home) -> str | None:
    alias = home.read_toml("vault.toml").get("active")
    return alias if isinstance(alias, str) else None


def _write_secret(folder: Path, keys: IdentityKeys) -> None:
    body = {"type": SECRET_TYPE, "did": keys.did, "secret": b64e(keys.secret), "key_seq": keys.key_seq}
    atomic.write_bytes(folder / "secret.json", canonical(body), mode=0o600)


def _save(home: Home, alias: str, keys: IdentityKeys, doc: dict[str, Any]) -> None:
    folder = _own_dir(home, alias)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    # The secret derives every key, so either order is safe; the identity document is
    # the commit point of a rotation and load() takes the key seq from it.
    if not (folder / "secret.json").exists():
        _write_secret(folder, keys)
    atomic.write_bytes(folder / "identity.json", canonical(doc))
    _write_secret(folder, keys)


def load(home: Home, alias: str | None = None) -> Identity:
    named = alias is not None
    if alias is None:
        alias = active_alias(home)
        if alias is None:
            aliases = own_aliases(home)
            if not aliases:
                raise NoIdentity()
            alias = aliases[0]
    folder = _own_dir(home, alias)
    if not (folder / "identity.json").exists():
        if not own_aliases(home):
            raise NoIdentity()
        if not named:  # the user typed no alias: say where this one comes from
            raise NotFound(f"the active identity {alias!r} (config/vault.toml) is not in this vault: "
                           "choose one with `hn id use ALIAS` (see `hn id list`)")
        raise NotFound(f"no identity with alias {alias!r} (see `hn id list`)")
    try:
        doc = loads_canonical((folder / "identity.json").read_bytes())
        history = verify_identity(doc)
    except OSError as exc:
        raise KeyFileError(f"identity file of {alias!r} cannot be read ({folder / 'identity.json'}): "
                           f"{exc.strerror or exc}") from exc
    except (MalformedDocument, VerificationError) as exc:
        raise KeyFileError(f"identity file of {alias!r} is unreadable or tampered: {exc}") from exc
    try:
        raw = loads_canonical((folder / "secret.json").read_bytes())
        if not isinstance(raw, dict) or raw.get("type") != SECRET_TYPE:
            raise MalformedDocument("not an identity secret")
        if raw.get("did") != history.did:
            raise MalformedDocument("the key file names another DID")
        secret = b64d(raw.get("secret"), length=SECRET_BYTES, what="secret")
        key_seq = raw.get("key_seq")
        if not isinstance(key_seq, int) or isinstance(key_seq, bool):
            raise MalformedDocument("key_seq missing")
    except OSError as exc:
        raise KeyFileError(f"key file of {alias!r} cannot be read ({folder / 'secret.json'}): "
                           f"{exc.strerror or exc}") from exc
    except MalformedDocument as exc:
        raise KeyFileError(f"key file of {alias!r} is unreadable or tampered: {exc}") from exc
    # The identity document is the commit point of a rotation: its newest key wins.
    keys = IdentityKeys(secret, history.current.seq)
    if keys.did != history.did or abs(key_seq - history.current.seq) > 1:
        raise KeyFileError(f"key file of {alias!r} does not match its identity (tampered?)")
    if keys.signing_public() != history.current.signing_public_key:
        raise KeyFileError(f"key file of {alias!r} does not match its identity (tampered?)")
    return Identity(alias, doc, history, keys)


def create_with_secret(
    home: Home, alias: str, secret: bytes, history_doc: dict[str, Any] | None = None
) -> Identity:
    """Create (or restore) an identity from a secret; with ``history_doc`` keep its keys."""
    check_alias(alias)
    if (_own_dir(home, alias) / "identity.json").exists():
        raise InputError(f"an identity with alias {alias!r} already exists")
    base = IdentityKeys(secret, 0)
    for other in own_aliases(home):
        if load(home, other).did == base.did:
            raise InputError(f"this identity is already in the vault as {other!r}")
    now = timefmt.now_iso()
    if history_doc is not None:
        history = verify_identity(history_doc)
        if history.did != base.did:
            raise VerificationError(
                f"the identity document belongs to another DID ({history.did}) than the recovered secret "
                f"({base.did}): the shares are of another identity, or the passphrase is not the one given "
                "to `hn id recovery split`")
        keys = IdentityKeys(secret, history.current.seq)
        for entry in history.keys:
            if keys.signing_public(entry.seq) != entry.signing_public_key or keys.hpke_public(entry.seq) != entry.hpke_public_key:
                raise VerificationError(f"key {entry.seq} of the identity document was not derived from this secret")
        doc = build_identity(keys, alias, list(history.entries), now)
    else:
        keys = base
        doc = build_identity(keys, alias, [make_key_entry(keys, 0, GENESIS_CREATED_AT, None)], now)
    with home.lock():
        check_log(home, keys)  # a damaged log gets no new identity on top of it
        _save(home, alias, keys, doc)
        if active_alias(home) is None:
            set_active(home, alias)
        identity = load(home, alias)
        home.append_event(keys, "identity.create", {"alias": alias, "did": keys.did, "key_seq": keys.key_seq})
    return identity


def check_log(home: Home, keys: IdentityKeys) -> None:
    """Check the event log's head before a change, with the keys of whichever own identity signed it."""
    files = home.event_files()
    signer = home.read_event(files[-1]).get("signer") if files else None
    if signer is not None and signer != keys.did:
        for alias in own_aliases(home):
            other = load(home, alias)
            if other.did == signer:
                keys = other.keys
                break
    home.check_head(keys)


def create(home: Home, alias: str) -> Identity:
    home.ensure()
    return create_with_secret(home, alias, os.urandom(SECRET_BYTES))


def set_active(home: Home, alias: str) -> None:
    config = home.read_toml("vault.toml")
    config["active"] = alias
    home.write_toml("vault.toml", config)


def use(home: Home, alias: str) -> Identity:
    identity = load(home, alias)
    with home.lock():
        check_log(home, identity.keys)
        set_active(home, alias)
        home.append_event(identity.keys, "identity.use", {"alias": alias, "did": identity.did})
    return identity


def rotate(home: Home, alias: str | None = None) -> Identity:
    current = load(home, alias)
    keys = IdentityKeys(current.keys.secret, current.keys.key_seq + 1)
    now = timefmt.now_iso()
    entries = list(current.history.entries)
    # The new entry is signed by the previous key (make_key_entry signs with seq - 1).
    entries.append(make_key_entry(keys, keys.key_seq, now, entries[-1]))
    doc = build_identity(keys, current.alias, entries, now)
    verify_identity(doc)
    with home.lock():
        check_log(home, keys)  # before the rotation commits: it must be logged
        _save(home, current.alias, keys, doc)
        home.append_event(keys, "identity.rotate", {"did": keys.did, "key_seq": keys.key_seq})
    return load(home, current.alias)


# -- contacts and key histories ---------------------------------------------------------
def contact_path(home: Home, did: str) -> Path:
    return home.path("identities", "contacts", f"{did_tail(did)}.json")


def import_contact(home: Home, raw: bytes, *, record_event: bool = True, refuse_own: bool = False) -> KeyHistory:
    """Pin a contact's identity@1 (newer histories replace older, rollback refused).

    ``refuse_own`` (`hn id import`): an identity of this vault's own is refused, saying why,
    instead of being taken as already known (or pinned as a contact no lookup reads).
    """
    try:
        doc = loads_strict(raw, max_bytes=1 << 20)
    except MalformedDocument as exc:
        raise InputError(f"not an identity@1 document: {exc}") from exc
    offered = verify_identity(doc)
    if refuse_own:
        _refuse_own(home, offered)
    pinned = known_history(home, offered.did)
    accept_update(pinned, offered)
    if pinned is not None and pinned.extends(offered) and offered.extends(pinned):
        return pinned
    with home.lock():
        try:
            identity = load(home) if record_event else None
        except NoIdentity:
            identity = None
        if identity is not None:
            check_log(home, identity.keys)
        atomic.write_bytes(contact_path(home, offered.did), canonical(doc))
        if identity is not None:
            home.append_event(identity.keys, "contact.import", {"did": offered.did, "keys": len(offered.keys)})
    return offered


def _refuse_own(home: Home, offered: KeyHistory) -> None:
    """InputError if ``offered`` is one of this vault's own identities, whatever its keys."""
    for alias in own_aliases(home):
        mine = load(home, alias)
        if mine.did != offered.did:
            continue
        try:
            accept_update(mine.history, offered)  # a fork of your own keys stays a ForkError
        except RollbackError:
            raise InputError(f"{offered.did} is your own identity {alias!r}, and this export of it is older "
                             f"(key {offered.current.seq}; this vault holds key {mine.history.current.seq}): "
                             "there is nothing to import") from None
        if len(offered.keys) == len(mine.history.keys):
            raise InputError(f"{offered.did} is your own identity {alias!r} in this vault: there is nothing to "
                             "import (`hn id import` pins the identities of other people)")
        # Newer: rotated in another vault. Import pins contacts; it does not change own keys
        # (and one identity signing in two vaults would fork its presence and its log).
        raise InputError(
            f"{offered.did} is your own identity {alias!r}, rotated in another vault to key {offered.current.seq} "
            f"(this vault holds key {mine.history.current.seq}); `hn id import` does not change your own keys. "
            "Keep using the vault that rotated it, or move that vault here (`hn vault backup restore` of a backup "
            "of it), or rebuild it in a new vault with `hn id recovery restore --identity FILE`")


def contact_dids(home: Home) -> list[str]:
    folder = home.path("identities", "contacts")
    if not folder.is_dir():
        return []
    return sorted("did:hn:" + p.stem for p in folder.glob("*.json"))


def known_history(home: Home, did: str) -> KeyHistory | None:
    """A verified key history for ``did`` from own identities or pinned contacts."""
    for alias in own_aliases(home):
        ident = load(home, alias)
        if ident.did == did:
            return ident.history
    # Contacts imported by hand, then identities pinned by `hn mcp federate add`.
    for path in (contact_path(home, did), home.path("cache", "federation", did_tail(did), "identity.json")):
        if path.exists():
            try:
                return verify_identity(loads_strict(path.read_bytes()))
            except (MalformedDocument, VerificationError) as exc:
                raise KeyFileError(f"pinned identity of {did} is tampered: {exc}") from exc
    return None


def require_history(home: Home, did: str) -> KeyHistory:
    history = known_history(home, did)
    if history is None:
        raise NotFound(f"unknown identity {did}: import its identity@1 first (`hn id import FILE`)")
    return history
