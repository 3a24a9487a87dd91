"""Policy selectors: gate a capability on what my trust graph says about the requester.

Capabilities (relay pushes, backup uploads, inbound federation) call
``allows(home, policy_name, requester_did) -> (bool, reason)``. The policy value (per
target, '*' or default, see hn.vault.policy) is one of:

- ``allow`` / ``deny``: everyone / no one.
- ``friends``: DIDs in my federation roster (config/federation.toml) or my contacts.
- ``allowlist``: only DIDs given their own ``allow`` value (``--target DID``).
- a selector: one or more comparisons joined by ``&&`` (all must hold), e.g.
  ``reputation.avg_confidence>=0.8`` or ``reputation.count>=2&&trust_link.confidence>0.5``.

Grammar (whitespace around tokens is ignored)::

    selector   = comparison *( "&&" comparison )
    comparison = name op number
    name       = "reputation.avg_confidence" | "reputation.count" | "reputation.min_confidence"
               | "reputation.max_confidence" | "reputation.stddev" | "trust_link.confidence"
    op         = ">=" | ">" | "<=" | "<" | "=="
    number     = digits [ "." digits ]          (no exponent, no sign)

``reputation.*`` is the aggregate of the live links about the requester that I hold (my
own and those friends exposed to me), computed now; ``trust_link.confidence`` is my own
highest live link confidence to the requester (0 without one). Unsigned requesters
(``None``) have no links: only ``allow`` admits them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from hn.errors import Forbidden, InputError
from hn.proto import trust as proto
from hn.trust import links
from hn.vault import identities, policy
from hn.vault.home import Home

NAMES = ("reputation.avg_confidence", "reputation.count", "reputation.min_confidence",
         "reputation.max_confidence", "reputation.stddev", "trust_link.confidence")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt,
}
COMPARISON = re.compile(r"^\s*([a-z_]+\.[a-z_]+)\s*(>=|<=|==|>|<)\s*([0-9]+(?:\.[0-9]+)?)\s*$")
KEYWORDS = ("allow", "deny", "friends", "allowlist")


@dataclass(frozen=True)
class Comparison:
    name: str
    op: str
    value: float

    def text(self) -> str:
        return f"{self.name}{self.op}{self.value:g}"


def parse(value: str) -> list[Comparison]:
    """Parse a selector; raises InputError naming what is wrong."""
    parts = value.split("&&")
    out = []
    for part in parts:
        match = COMPARISON.match(part)
        if match is None:
            raise InputError(f"selector {part.strip()!r} is not NAME OP NUMBER (e.g. reputation.avg_confidence>=0.8)")
        name, op, number = match.groups()
        if name not in NAMES:
            raise InputError(f"unknown selector {name!r}; known: {', '.join(NAMES)}")
        out.append(Comparison(name, op, float(number)))
    return out


def is_selector(value: str) -> bool:
    return value.strip() not in KEYWORDS


def validate(value: str) -> str:
    """Check a policy value that may be a selector (for `hn policy set`)."""
    if is_selector(value):
        parse(value)
    return value


def _facts(home: Home, did: str) -> dict[str, float]:
    me = identities.load(home)
    docs, _ = links.live_about(home, me, did)
    agg = proto.aggregate([float(d["confidence"]) for d in docs])
    own = [float(d["confidence"]) for d in docs if d["from"] == me.did]
    return {
        "reputation.avg_confidence": float(agg["avg_confidence"]),
        "reputation.count": float(agg["count"]),
        "reputation.min_confidence": float(agg["min_confidence"]),
        "reputation.max_confidence": float(agg["max_confidence"]),
        "reputation.stddev": float(agg["stddev"]),
        "trust_link.confidence": max(own, default=0.0),
    }


def is_friend(home: Home, did: str) -> bool:
    from hn.federation import roster

    return roster.is_friend(home, did) or did in identities.contact_dids(home)


def require(home: Home, policy_name: str, requester: str, refused: str) -> None:
    """Raise Forbidden ("<refused> refused by policy: <reason>") unless the policy admits ``requester``."""
    allowed, reason = allows(home, policy_name, requester)
    if not allowed:
        raise Forbidden(f"{refused} refused by policy: {reason}")


def allows(home: Home, policy_name: str, requester: str | None) -> tuple[bool, str]:
    """Does policy ``policy_name`` admit ``requester`` (a DID, or None if unsigned)? With the reason."""
    value = policy.get(home, policy_name, requester).strip()
    who = requester or "an unsigned requester"
    if value == "allow":
        return True, f"policy {policy_name} allows {'anyone' if requester is None else who}"
    if value == "deny":
        return False, f"policy {policy_name} denies {who}"
    if requester is None:
        return False, f"policy {policy_name} is {value!r}: the request must be signed"
    if value == "friends":
        if is_friend(home, requester):
            return True, f"{requester} is a friend"
        return False, f"policy {policy_name} admits friends only and {requester} is not one"
    if value == "allowlist":
        return False, f"policy {policy_name} admits an allowlist and {requester} is not on it"
    try:
        comparisons = parse(value)
    except InputError as exc:
        return False, f"policy {policy_name} value {value!r} is not understood: {exc.message}"
    facts = _facts(home, requester)
    for comp in comparisons:
        actual = facts[comp.name]
        if not OPS[comp.op](actual, comp.value):
            return False, (f"{comp.name} of {requester} is {actual:g}, policy {policy_name} "
                           f"needs {comp.op} {comp.value:g}")
    return True, f"{requester} meets {policy_name}: " + " and ".join(c.text() for c in comparisons)
