"""Named policies of the vault owner, in config/policy.toml.

A policy has a default value and optional per-target values (a DID, or "*" for
anyone). Capabilities read them with ``get(home, name, target)``; unknown names are
refused so that a typo never silently does nothing.
"""

from __future__ import annotations

from typing import Any

from hn.errors import InputError
from hn.proto import trust
from hn.proto.keys import is_did
from hn.vault.home import Home

FILE = "policy.toml"

# name -> (default value, description). Capabilities add their names here.
KNOWN: dict[str, tuple[str, str]] = {
    "federation.mode": ("public", "who may read the index and artefacts: public | friends"),
    "relay.accept": ("friends", "whose presence this node relays: friends | allowlist | a reputation selector"),
    "relay.ttl": ("86400", "seconds a relayed presence is kept at most"),
    "trust.exposure": ("deny", "who may fetch my reputation@1: allow | deny | friends | allowlist | a reputation "
                       "selector, per --target DID or '*'"),
    "trust.max_age": ("2592000", "seconds a trust link stays live at most"),
    "backup.accept": ("friends", "whose backups this node stores: friends | allowlist | a reputation selector"),
    "backup.retention": ("5", "backups kept per owner (keep-last-N, plus the bases they need)"),
    "backup.quota_bytes": ("68719476736", "bytes of backups stored per owner at most"),
}


CHOICES = {"federation.mode": ("public", "friends")}
NUMBERS = ("relay.ttl", "trust.max_age", "backup.retention", "backup.quota_bytes")
# The largest value of a number policy: what its reader takes (a trust link lives at most
# hn.proto.trust.MAX_TTL), else what a signed 64-bit integer holds.
MAXIMA = {"trust.max_age": trust.MAX_TTL}
LARGEST = 2**63 - 1
# Values of these may also be reputation selectors, checked by hn.trust.selectors.
SELECTABLE = ("relay.accept", "backup.accept", "trust.exposure")
# The policies read for one peer (the requester, the owner of a backup): only these take a
# DID --target; the others are one value for every peer ('*' or the default).
PER_PEER = ("relay.accept", "backup.accept", "trust.exposure", "backup.retention", "backup.quota_bytes")


def check_value(name: str, value: str) -> str:
    if name in CHOICES and value not in CHOICES[name]:
        raise InputError(f"{name} takes one of: {', '.join(CHOICES[name])}")
    if name in NUMBERS:
        most = MAXIMA.get(name, LARGEST)
        # ASCII digits only (str.isdigit also takes '²' and other scripts' digits), and no
        # longer than the largest value before it is converted.
        if not (value.isascii() and value.isdigit() and value.strip("0")):
            raise InputError(f"{name} takes a positive whole number")
        if len(value) > len(str(most)) or int(value) > most:
            raise InputError(f"{name} takes a positive whole number, at most {most}")
    return value


def check_name(name: str) -> str:
    if name not in KNOWN:
        raise InputError(f"unknown policy {name!r}; known: {', '.join(sorted(KNOWN))}")
    return name


def _check_target(name: str, target: str | None) -> str | None:
    if target is not None and target != "*" and not is_did(target):
        raise InputError(f"--target must be a did:hn DID or '*', not {target!r}")
    if target not in (None, "*") and name not in PER_PEER:
        raise InputError(f"{name} is one value for every peer: set it without --target "
                         f"(per-peer values: {', '.join(sorted(PER_PEER))})")
    return target


def load(home: Home) -> dict[str, Any]:
    return home.read_toml(FILE)


def check(name: str, value: str, target: str | None = None) -> None:
    """Raise InputError unless policy ``name`` can take ``value`` for ``target``."""
    check_name(name)
    check_value(name, value)
    _check_target(name, target)


def set_policy(home: Home, name: str, value: str, target: str | None = None) -> dict[str, Any]:
    check(name, value, target)
    with home.lock():
        data = load(home)
        entry = data.get(name)
        if not isinstance(entry, dict):
            entry = {}
        if target is None:
            entry["default"] = value
        else:
            targets = entry.get("targets")
            if not isinstance(targets, dict):
                targets = {}
            targets[target] = value
            entry["targets"] = targets
        data[name] = entry
        home.write_toml(FILE, data)
    return data


# The federation profile's node settings that are also policies (`hn mcp serve --profile
# federation` writes config/mcp.federation.toml). Where the owner set no policy, the file's
# value applies before the built-in default: a node set up as "friends only" is so.
PROFILE_FILE = "mcp.federation.toml"
PROFILE_KEYS: dict[str, tuple[str, str]] = {
    "federation.mode": ("federation", "mode"),
    "relay.accept": ("relay", "accept"),
    "trust.exposure": ("trust", "exposure"),
    "relay.ttl": ("relay", "ttl"),
}


def get(home: Home, name: str, target: str | None = None) -> str:
    """The value for ``target``: its own value, else the '*' value, else the vault-wide
    one, else the federation profile's, else the built-in default."""
    value = explicit(home, name, target)
    if value is None:
        value = from_profile(home, name)
    return KNOWN[name][0] if value is None else value


def from_profile(home: Home, name: str) -> str | None:
    """The federation profile's value for policy ``name``, if its config file sets one.

    A value the policy cannot take is None here; the node refuses to start with it
    (``profile_problems``) and `hn policy show` names it."""
    if name not in PROFILE_KEYS:
        return None
    return _usable(name, _profile_value(home.read_toml(PROFILE_FILE), name))


def _usable(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_value(name, value)
    except InputError:
        return None


def _profile_value(profile: dict[str, Any], name: str) -> str | None:
    """Policy ``name``'s value in the parsed profile file, as text (None if it sets none)."""
    keys = PROFILE_KEYS.get(name)
    if keys is None:
        return None
    table = profile.get(keys[0])
    value = table.get(keys[1]) if isinstance(table, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a number in TOML, as `hn policy set` would be given it
    return value.strip() if isinstance(value, str) and value.strip() else None


def profile_problems(home: Home, check: Any = None) -> list[str]:
    """What the profile's policy values get wrong, one line each (``check``: an extra
    check of a value, raising InputError, for the selector policies)."""
    problems = []
    profile = home.read_toml(PROFILE_FILE)
    for name, (section, key) in PROFILE_KEYS.items():
        value = _profile_value(profile, name)
        problem = None if value is None else _problem(name, value, check)
        if problem is not None:
            problems.append(f"[{section}] {key} = {value!r} (config/{PROFILE_FILE}): {problem}")
    return problems


def file_problems(home: Home, check: Any = None) -> list[str]:
    """What the values of config/policy.toml (edited by hand, say) get wrong, one line each,
    as ``profile_problems`` says it of the profile's (``check``: the same extra check)."""
    problems = []
    for name, entry in load(home).items():
        if name not in KNOWN or not isinstance(entry, dict):
            continue  # never read
        targets = entry.get("targets")
        values = [(None, entry["default"])] if "default" in entry else []
        values += list(targets.items()) if isinstance(targets, dict) else []
        for target, value in values:
            problem = _problem(name, value, check)
            if problem is not None:
                where = f"{name}" + (f" for {target}" if target else "") + f" = {value!r} (config/{FILE})"
                problems.append(f"{where}: {problem}")
    return problems


def _problem(name: str, value: Any, check: Any) -> str | None:
    """Why ``value`` cannot be policy ``name``'s (None when it can)."""
    try:
        if not isinstance(value, str):
            raise InputError(f"{name} takes text, as `hn policy set` writes it")
        check_value(name, value)
        if check is not None and name in SELECTABLE:
            check(value)
    except InputError as exc:
        return exc.message
    return None


def explicit(home: Home, name: str, target: str | None = None) -> str | None:
    """The value the owner set for ``target`` (its own, else '*', else the vault-wide one);
    None if the owner set none, so a node setting may apply before the built-in default."""
    check_name(name)
    entry = load(home).get(name)
    if isinstance(entry, dict):
        targets = entry.get("targets")
        if isinstance(targets, dict):
            if target is not None and isinstance(targets.get(target), str):
                return str(targets[target])
            if isinstance(targets.get("*"), str):
                return str(targets["*"])
        if isinstance(entry.get("default"), str):
            return str(entry["default"])
    return None


def show(home: Home) -> dict[str, Any]:
    """Every policy: its vault-wide value and where that comes from ("policy" set by the
    owner, "profile" from the federation profile's config file, or "default")."""
    data = load(home)
    profile_file = home.read_toml(PROFILE_FILE)
    out: dict[str, Any] = {}
    for name, (default, description) in sorted(KNOWN.items()):
        raw = data.get(name)
        entry: dict[str, Any] = raw if isinstance(raw, dict) else {}
        in_profile = _profile_value(profile_file, name)
        profile = _usable(name, in_profile)
        if isinstance(entry.get("default"), str):
            value, source = entry["default"], "policy"
        elif profile is not None:
            value, source = profile, "profile"
        else:
            value, source = default, "default"
        out[name] = {
            "value": value,
            "source": source,
            "default": default,
            "targets": entry.get("targets", {}),
            "description": description,
        }
        if profile is None and in_profile is not None:
            out[name]["refused_profile_value"] = in_profile  # not a value this policy takes
    return out
