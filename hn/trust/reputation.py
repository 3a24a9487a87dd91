"""reputation@1: my signed aggregate of the live links about one person.

- ``trust/reputation/<alias>/<target tail>.json``: the newest computed document.
- ``trust/reputation/<alias>/published/<target tail>.json``: what my node serves at
  ``GET /trust/<target>`` (to requesters that ``trust.exposure`` allows).
- ``trust/reputation/<alias>/seq.json``: the high-water mark of my reputation seq.

Recomputing with nothing changed returns the stored document as it is (same seq, same
bytes); any change gets the next seq, so receivers can refuse rollbacks and forks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hn.errors import HnError, NotFound, VaultCorrupt, os_reason
from hn.proto import timefmt
from hn.proto import trust as proto
from hn.proto.canonical import canonical, loads_canonical
from hn.trust import links
from hn.vault import atomic
from hn.vault.home import Home
from hn.vault.identities import Identity, did_tail

log = logging.getLogger(__name__)

UNSIGNED = ("seq", "issued_at", "signer", "key_seq", "signature")


def folder(home: Home, alias: str) -> Path:
    return home.path("trust", "reputation", alias)


def computed_path(home: Home, alias: str, target: str) -> Path:
    return folder(home, alias) / f"{did_tail(target)}.json"


def published_path(home: Home, alias: str, target: str) -> Path:
    return folder(home, alias) / "published" / f"{did_tail(target)}.json"


def _read(path: Path, me: Identity) -> dict[str, Any] | None:
    """The reputation last signed about a target; None when there is none, or when the
    file no longer verifies: it is only the last result, and computing signs a new one
    (above every seq stored), which replaces it."""
    if not path.exists():
        return None
    try:
        return proto.verify_reputation(loads_canonical(path.read_bytes()), me.history)
    except (HnError, OSError) as exc:
        reason = exc.message if isinstance(exc, HnError) else os_reason(exc)
        log.warning("trust.reputation.replaced", extra={"hn": {
            "path": str(path), "error": reason,
            "say": f"the stored reputation {path} does not verify ({reason}); a new one is signed in its place"}})
        return None


def _next_seq(home: Home, me: Identity) -> int:
    path = folder(home, me.alias) / "seq.json"
    seq = 0
    if path.exists():
        try:
            seq = int(loads_canonical(path.read_bytes())["seq"])
        except (HnError, OSError, KeyError, TypeError, ValueError) as exc:
            raise VaultCorrupt(f"{path} is unreadable: {exc}") from exc
    # Never below a stored document's seq, even if seq.json was lost.
    for doc_path in folder(home, me.alias).rglob("*.json"):
        if doc_path.name != "seq.json":
            try:
                seq = max(seq, int(loads_canonical(doc_path.read_bytes()).get("seq", 0)))
            except (HnError, OSError, AttributeError, TypeError, ValueError):
                continue
    # At least the Unix time: a vault restored from a backup signs above what it published
    # before the restore (as presence@2 and dht_hint@1 do), not a seq receivers refuse.
    seq = max(seq + 1, int(timefmt.now()))
    atomic.write_bytes(path, canonical({"seq": seq}))
    return seq


def body_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in UNSIGNED}


def compute(home: Home, me: Identity, target: str) -> tuple[dict[str, Any], bool, list[str]]:
    """(signed reputation@1, changed since last time, refused links)."""
    did_tail(target)
    docs, refused = links.live_about(home, me, target)
    body = proto.reputation_body(me.did, target, docs, f"trust.max_age={links.max_age(home)}")
    with home.lock():
        path = computed_path(home, me.alias, target)
        old = _read(path, me)
        if old is not None and body_of(old) == body and old["key_seq"] == me.keys.key_seq:
            return old, False, refused
        doc = proto.sign_reputation(me.keys, body, _next_seq(home, me), timefmt.now_iso())
        atomic.write_bytes(path, canonical(doc))
        home.append_event(me.keys, "trust.reputation", {
            "target": target, "seq": doc["seq"], "aggregate": doc["aggregate"]})
    return doc, True, refused


def publish(home: Home, me: Identity, target: str) -> tuple[dict[str, Any], list[str]]:
    doc, _, refused = compute(home, me, target)
    with home.lock():
        atomic.write_bytes(published_path(home, me.alias, target), canonical(doc))
        home.append_event(me.keys, "trust.publish", {"target": target, "seq": doc["seq"]})
    return doc, refused


def published_bytes(home: Home, alias: str, target: str) -> bytes:
    path = published_path(home, alias, target)
    if not path.exists():
        raise NotFound(f"no published reputation about {target}")
    return path.read_bytes()


def aggregate_about(home: Home, me: Identity, target: str) -> dict[str, Any]:
    """The aggregate as it stands now, without signing or storing anything (for policy checks)."""
    docs, _ = links.live_about(home, me, target)
    return proto.aggregate([float(d["confidence"]) for d in docs])
