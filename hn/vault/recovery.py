"""SLIP-39 recovery of an identity secret (every key the identity has or will have)."""

from __future__ import annotations

from typing import Any

import shamir_mnemonic
from shamir_mnemonic import MnemonicError
from shamir_mnemonic.share import Share

from hn.errors import InputError, UsageError
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity


def check_passphrase(passphrase: str) -> bytes:
    """The passphrase as SLIP-39 takes it: printable ASCII only (no other could have been
    given to `split`, so a restore with one is refused rather than rebuilding a stranger)."""
    if any(not " " <= ch <= "~" for ch in passphrase):
        raise UsageError("the passphrase may hold printable ASCII characters only (letters a-z and A-Z, digits, "
                         "spaces and punctuation), as SLIP-39 requires")
    return passphrase.encode("ascii")


def split(home: Home, me: Identity, threshold: int, shares: int, passphrase: str = "") -> list[str]:
    secret_passphrase = check_passphrase(passphrase)
    if not 1 <= threshold <= shares <= 16:
        raise UsageError("need 1 <= threshold <= shares <= 16")
    if threshold == 1 and shares > 1:
        raise UsageError("a threshold of 1 with several shares is not allowed by SLIP-39; use 2 or more")
    groups = shamir_mnemonic.generate_mnemonics(
        group_threshold=1, groups=[(threshold, shares)], master_secret=me.keys.secret,
        passphrase=secret_passphrase,
    )
    with home.lock():
        home.append_event(me.keys, "identity.recovery_split", {"did": me.did, "threshold": threshold, "shares": shares})
    return list(groups[0])


def combine(mnemonics: list[str], passphrase: str = "") -> bytes:
    secret_passphrase = check_passphrase(passphrase)
    cleaned = [" ".join(m.split()) for m in mnemonics if m.strip()]
    if not cleaned:
        raise InputError("no mnemonics given (one share per line on standard input)")
    try:
        shares = {m: Share.from_mnemonic(m) for m in cleaned}  # a share given twice counts once
        first = next(iter(shares.values()))
        if any(s.identifier != first.identifier for s in shares.values()):
            raise InputError("the shares are not all of one split: each `hn id recovery split` makes a new set, "
                             "and only shares of the same set combine")
        needed = first.member_threshold
        if len(shares) > needed and all(
            s.common_parameters() == first.common_parameters() and s.group_index == first.group_index
            for s in shares.values()
        ):
            # "Any K of these rebuild it": more than K of one split is no mistake, K of them do.
            cleaned = list(shares)[:needed]
        secret = shamir_mnemonic.combine_mnemonics(cleaned, secret_passphrase)
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
