"""The vault's own presence@2: re-signed with a higher seq whenever what it says changes."""

from __future__ import annotations

from typing import Any

from hn.errors import MalformedDocument
from hn.proto import timefmt
from hn.proto.canonical import b64e, canonical, doc_digest, loads_canonical
from hn.proto.presence import PRESENCE_TYPE
from hn.proto.signed import sign_document
from hn.vault import atomic
from hn.vault.home import Home
from hn.vault.identities import Identity, did_tail
from hn.vault.store import index_root, load_catalog

LIFETIME = 7 * 24 * 3600
RENEW_BEFORE = 24 * 3600


def path_for(home: Home, did: str) -> Any:
    return home.path("presence", f"{did_tail(did)}.json")


def current(home: Home, did: str) -> dict[str, Any] | None:
    path = path_for(home, did)
    if not path.exists():
        return None
    try:
        return loads_canonical(path.read_bytes())  # type: ignore[no-any-return]
    except MalformedDocument:
        return None


def node_settings(home: Home) -> dict[str, Any]:
    return home.read_toml("node.toml")


def _highest_seq(home: Home, did: str) -> int:
    """High-water mark: the file and the newest presence.publish event of the log.

    The event is appended before the file is replaced, so after a failed file write the
    log knows a higher seq than the file; reusing it would sign two presences with one seq.
    """
    doc = current(home, did)
    best = int(doc.get("seq", 0)) if doc is not None else 0
    for path in reversed(home.event_files()):
        event = home.read_event(path)
        if event.get("kind") == "presence.publish" and event.get("signer") == did:
            return max(best, int(event["data"].get("seq", 0)))
    return best


def lasts(doc: dict[str, Any], me: Identity, now: float | None = None) -> bool:
    """Whether a presence of ours needs no new signature yet: signed with our current key
    and not within RENEW_BEFORE of its expiry."""
    now = timefmt.now() if now is None else now
    return doc.get("key_seq") == me.keys.key_seq and timefmt.parse(doc["expires_at"]) - now > RENEW_BEFORE


def refresh(
    home: Home, me: Identity, *, force: bool = False, url: str | None = None,
    relays: list[dict[str, Any]] | None = None, index: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Return (presence, changed). Signs a new one if its content would differ.

    ``index``: the published index's root, size and cursor, from a caller that keeps them
    up to date itself (the node's publisher); otherwise they come from the catalogue.
    """
    if index is None:
        catalog = load_catalog(home)
        entries = catalog.index_entries()
        index = {"root": index_root(entries), "size": len(entries), "cursor": catalog.index_cursor()}
    settings = node_settings(home)
    old = current(home, me.did)
    if url is None:
        url = settings.get("public_url") or (old or {}).get("url")
    if relays is None:
        relays = settings.get("relays", [])
    now = timefmt.now()
    body: dict[str, Any] = {
        "type": PRESENCE_TYPE,
        "did": me.did,
        "url": url,
        "index": index,
        "hpke_public_key": b64e(me.history.current.hpke_public_key),
        "identity_digest": doc_digest(me.doc),
        "relays": sorted(relays or [], key=lambda r: r["did"]),
    }
    if old is not None and not force and all(old.get(k) == v for k, v in body.items()) and lasts(old, me, now):
        return old, False
    with home.lock():
        seq = _highest_seq(home, me.did) + 1
        body.update({"seq": seq, "issued_at": timefmt.fmt(now), "expires_at": timefmt.fmt(now + LIFETIME)})
        doc = sign_document(body, me.keys)
        # Event first: a presence on disk is always one the log records.
        home.append_event(me.keys, "presence.publish", {"seq": seq, "digest": doc_digest(doc)})
        atomic.write_bytes(path_for(home, me.did), canonical(doc))
    return doc, True
