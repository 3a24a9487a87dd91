"""SLIP-39 recovery of an identity secret (every key the identity has or will have)."""

from __future__ import annotations

from typing import Any

import shamir_mnemonic
from shamir_mnemonic import MnemonicError

from hn.errors import InputError, UsageError
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity


def split(home: Home, me: Identity, threshold: int, shares: int, passphrase: str = "") -> list[str]:
    if not 1 <= threshold <= shares <= 16:
        raise UsageError("need 1 <= threshold <= shares <= 16")
    if threshold == 1 and shares > 1:
        raise UsageError("a threshold of 1 with several shares is not allowed by SLIP-39; use 2 or more")
    groups = shamir_mnemonic.generate_mnemonics(
        group_threshold=1, groups=[(threshold, shares)], master_secret=me.keys.secret,
        passphrase=passphrase.encode("utf-8"),
    )
    with home.lock():
        home.append_event(me.keys, "identity.recovery_split", {"did": me.did, "threshold": threshold, "shares": shares})
    return list(groups[0])


def combine(mnemonics: list[str], passphrase: str = "") -> bytes:
    cleaned = [" ".join(m.split()) for m in mnemonics if m.strip()]
    if not cleaned:
        raise InputError("no mnemonics given (one share per line on standard input)")
    try:
        secret = shamir_mnemonic.combine_mnemonics(cleaned, passphrase.encode("utf-8"))
    except MnemonicError as exc:
        raise InputError(f"could not recover the secret: {exc}") from exc
    if len(secret) != 32:
        raise InputError("the mnemonics do not hold an hn identity secret")
    return bytes(secret)


def restore(
    home: Home, mnemonics: list[str], alias: str, history_doc: dict[str, Any] | None = None,
    passphrase: str = "",
) -> Identity:
    secret = combine(mnemonics, passphrase)
    home.ensure()
    return identities.create_with_secret(home, alias, secret, history_doc)
