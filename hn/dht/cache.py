"""The signed local cache of resolved presences: $HN_HOME/cache/discover/<did>.json.

Each entry keeps the signed hint and the signed presence@2 exactly as verified; reading an
entry verifies both again, so a tampered cache file is refused, not trusted.
"""

from __future__ import annotations

from typing import Any

from hn.errors import HnError, MalformedDocument, NotFound, RollbackError, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import canonical, doc_digest, loads_canonical
from hn.proto.dht_hint import Hint, parse_hint
from hn.proto.presence import verify_presence
from hn.vault import atomic
from hn.vault.home import Home
from hn.vault.identities import did_tail

CACHE_TYPE = "discover_cache@1"


def path_for(home: Home, did: str) -> Any:
    return home.path("cache", "discover", f"{did_tail(did)}.json")


def store(home: Home, hint: Hint, presence: dict[str, Any]) -> None:
    """Keep a verified (hint, presence) pair; never one older than the entry already kept."""
    check_not_older(home, hint.did, hint.seq, presence["seq"])
    entry = {"type": CACHE_TYPE, "did": hint.did, "hint": hint.raw.decode("utf-8"), "presence": presence,
             "verified_at": timefmt.now_iso()}
    atomic.write_bytes(path_for(home, hint.did), canonical(entry))


def cached(home: Home, did: str) -> tuple[Hint, dict[str, Any]] | None:
    """The cached (hint, presence) of ``did`` if there is one that verifies, else None."""
    try:
        hint, presence, _ = load(home, did)
    except (NotFound, VerificationError):
        return None
    return hint, presence


def check_not_older(home: Home, did: str, hint_seq: int | None, presence_seq: int | None) -> None:
    """RollbackError if the cache holds a newer hint or presence of ``did`` (DESIGN: keep the
    highest seq seen, refuse older ones). A cache entry that does not verify counts for nothing."""
    held = cached(home, did)
    if held is None:
        return
    hint, presence = held
    if hint_seq is not None and hint_seq < hint.seq:
        raise RollbackError(f"dht_hint@1 seq {hint_seq} of {did} is older than seq {hint.seq} "
                            "already verified (local cache): refused")
    if presence_seq is not None and presence_seq < presence["seq"]:
        raise RollbackError(f"presence@2 seq {presence_seq} of {did} is older than seq {presence['seq']} "
                            "already verified (local cache): refused")


def load(home: Home, did: str) -> tuple[Hint, dict[str, Any], bool]:
    """(hint, presence, expired) of the cached entry, verified again; NotFound if none."""
    path = path_for(home, did)
    if not path.exists():
        raise NotFound(f"no cached presence for {did}")
    try:
        entry = loads_canonical(path.read_bytes())
        if not isinstance(entry, dict) or entry.get("type") != CACHE_TYPE or entry.get("did") != did:
            raise MalformedDocument("not a discover cache entry")
        hint = parse_hint(str(entry["hint"]).encode("utf-8"))
        presence = entry["presence"]
        if hint.did != did:
            raise VerificationError("cached hint is for another DID")
        verify_presence(presence, hint.history)
        if doc_digest(presence) != hint.presence_digest:
            raise VerificationError("cached presence does not match its hint")
    except (OSError, KeyError, MalformedDocument, VerificationError) as exc:
        raise VerificationError(f"cached presence of {did} does not verify: {exc}") from exc
    expired = timefmt.parse(presence["expires_at"]) <= timefmt.now()
    return hint, presence, expired


def listing(home: Home) -> list[dict[str, Any]]:
    folder = home.path("cache", "discover")
    out: list[dict[str, Any]] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        did = "did:hn:" + path.stem
        try:
            if not path.is_file():
                raise VerificationError(f"{path.name} is not a file")
            hint, presence, expired = load(home, did)
        except HnError as exc:
            # A stray file or folder (not named after a DID, not an entry) is listed, not fatal.
            out.append({"did": did, "ok": False, "error": exc.message})
            continue
        out.append({"did": did, "ok": True, "url": presence.get("url"), "presence_seq": presence["seq"],
                    "hint_seq": hint.seq, "expires_at": presence["expires_at"], "expired": expired})
    return out
