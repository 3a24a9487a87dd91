"""The vault's own presence@2: re-signed with a higher seq whenever what it says changes.

The seq is at least the Unix time of signing (as for dht_hint@1), so a vault restored
from a backup signs above every presence its friends saw before the restore, instead of
reusing seqs they would refuse as a fork or a rollback. A restore leaves a mark
(``RESTORED``) that makes the next signing happen whether or not the content changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hn.errors import HnError, MalformedDocument
from hn.proto import timefmt
from hn.proto.canonical import b64e, canonical, doc_digest, loads_canonical
from hn.proto.presence import PRESENCE_TYPE, check_relay
from hn.proto.signed import sign_document
from hn.vault import atomic
from hn.vault.home import Home
from hn.vault.identities import Identity, did_tail
from hn.vault.store import index_root, load_catalog

LIFETIME = 7 * 24 * 3600
RENEW_BEFORE = 24 * 3600
RESTORED = ("run", "restored.json")  # left by a restore: sign a new presence at the next chance


def mark_restored(home: Home, backup_id: str) -> None:
    atomic.write_bytes(home.path(*RESTORED), canonical({"backup": backup_id, "restored_at": timefmt.now_iso()}))


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


# Tries to sign a presence while other writers keep appending to the log; the last one
# signs the index it has, whatever the log did meanwhile.
SIGN_TRIES = 5


def refresh(
    home: Home, me: Identity, *, force: bool = False, url: str | None = None,
    relays: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Return (presence, changed). Signs a new one, of the catalogue's index, if its content
    would differ."""

    def catalogue_index() -> tuple[dict[str, Any], tuple[int, str]]:
        catalog = load_catalog(home)
        entries = catalog.index_entries()
        index = {"root": index_root(entries), "size": len(entries), "cursor": catalog.index_cursor()}
        return index, (catalog.head_seq, catalog.head_hash)

    return sign_fenced(home, me, catalogue_index, force=force, url=url, relays=relays)


def sign_fenced(
    home: Home, me: Identity, read_index: Callable[[], tuple[dict[str, Any], tuple[int, str]]], *,
    force: bool = False, url: str | None = None, relays: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """(presence, changed) for the index ``read_index`` gives (root, size, cursor) with the
    log head it was read at: signed if the presence would say something new.

    Another process (the CLI beside a running node) may append an event between the read
    and the signature; the signature is made under the vault lock only while the log still
    ends at that head, and otherwise the index is read again. The last try signs what it
    read: a log that never stops moving must not leave the vault without a presence.
    """
    restored = home.path(*RESTORED)
    force = force or restored.exists()
    for attempt in range(SIGN_TRIES):
        index, head = read_index()
        fence = head if attempt < SIGN_TRIES - 1 else None
        doc, changed = _sign_if_changed(home, me, _body(home, me, index, url, relays), force, fence)
        if doc is not None:
            if changed:
                restored.unlink(missing_ok=True)
            return doc, changed
    raise AssertionError("unreachable: the last try signs whatever the log does")


def _body(home: Home, me: Identity, index: dict[str, Any], url: str | None,
          relays: list[dict[str, Any]] | None) -> dict[str, Any]:
    settings = node_settings(home)
    if url is None:
        url = settings.get("public_url") or (current(home, me.did) or {}).get("url")
    if relays is None:
        # An entry of config/node.toml edited by hand into something no peer would accept is
        # left out, not signed into a presence every peer would refuse (`hn mcp relay list`
        # names it).
        relays = [r for r in settings.get("relays", []) if _usable_relay(r)]
    return {
        "type": PRESENCE_TYPE,
        "did": me.did,
        "url": url,
        "index": index,
        "hpke_public_key": b64e(me.history.current.hpke_public_key),
        "identity_digest": doc_digest(me.doc),
        "relays": sorted(relays or [], key=lambda r: r["did"]),
    }


def _usable_relay(relay: Any) -> bool:
    try:
        check_relay(relay)
    except HnError:
        return False
    return True


def _sign_if_changed(home: Home, me: Identity, body: dict[str, Any], force: bool,
                     head: tuple[int, str] | None) -> tuple[dict[str, Any] | None, bool]:
    """(the current presence, False) if it already says ``body`` and lasts; else a new
    one signed, unless the log no longer ends at ``head`` (None, False)."""
    now = timefmt.now()
    old = current(home, me.did)
    if old is not None and not force and all(old.get(k) == v for k, v in body.items()) and lasts(old, me, now):
        return old, False
    with home.lock():
        if head is not None and home.head() != head:
            return None, False
        seq = max(_highest_seq(home, me.did) + 1, int(now))
        body = {**body, "seq": seq, "issued_at": timefmt.fmt(now), "expires_at": timefmt.fmt(now + LIFETIME)}
        doc = sign_document(body, me.keys)
        # Event first: a presence on disk is always one the log records.
        home.append_event(me.keys, "presence.publish", {"seq": seq, "digest": doc_digest(doc)})
        atomic.write_bytes(path_for(home, me.did), canonical(doc))
    return doc, True
