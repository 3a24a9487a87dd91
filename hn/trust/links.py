"""My trust links on disk, and the link headers friends exposed to me.

- ``trust/links/<alias>/<link id>.json``: ``{"link": trust_link@1, "evidence": [...]}``;
  the evidence stays with the owner, the signed link commits to it by digest.
- ``cache/trust/<did tail>/links.json``: a friend's link headers (no evidence) as last
  fetched from their node, each verified against the friend's pinned key history.

Every read verifies again: a link file edited on disk is refused, never counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hn.errors import HnError, InputError, MalformedDocument, UsageError, VerificationError
from hn.proto import timefmt
from hn.proto import trust as proto
from hn.proto.canonical import canonical, loads_canonical
from hn.proto.keys import is_did
from hn.trust import evidence as ev
from hn.vault import atomic, identities, policy
from hn.vault.home import Home
from hn.vault.identities import Identity, did_tail

log = logging.getLogger("hn.trust")
MAX_FILE = 8 * 1024 * 1024


@dataclass
class StoredLink:
    link: dict[str, Any]
    evidence: list[dict[str, Any]]
    expires_at: float
    live: bool
    source: str  # "mine" or "friend"

    def view(self, with_evidence: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.link["id"], "from": self.link["from"], "to": self.link["to"],
            "context": self.link["context"], "confidence": self.link["confidence"],
            "confidence_source": self.link["confidence_source"],
            "derived_confidence": self.link["derived_confidence"],
            "evidence_count": self.link["evidence_count"], "last_seen": self.link["last_seen"],
            "issued_at": self.link["issued_at"], "ttl_seconds": self.link["ttl_seconds"],
            "expires_at": timefmt.fmt(self.expires_at), "live": self.live, "source": self.source,
        }
        if with_evidence:
            out["based_on"] = [e["id"] for e in self.evidence]
        return out


def max_age(home: Home) -> int:
    raw = policy.get(home, "trust.max_age")
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"policy trust.max_age must be a number of seconds, not {raw!r}") from None
    if not 0 < value <= proto.MAX_TTL:
        raise InputError(f"policy trust.max_age must be within 1..{proto.MAX_TTL} seconds")
    return value


def links_dir(home: Home, me: Identity) -> Path:
    return home.path("trust", "links", me.alias)


def link_path(home: Home, me: Identity, doc: dict[str, Any]) -> Path:
    # One folder per person: a policy check about one requester reads only their links.
    return links_dir(home, me) / did_tail(doc["to"]) / f"{doc['id']}.json"


def friend_cache(home: Home, did: str) -> Path:
    return home.path("cache", "trust", did_tail(did), "links.json")


# -- deriving ---------------------------------------------------------------------------
def derive(home: Home, me: Identity, target: str, evidence_ids: list[str] | None = None, *,
           context: str = proto.DEFAULT_CONTEXT, confidence: float | None = None,
           ttl: int | None = None) -> StoredLink:
    """Derive (or re-derive) my link to ``target`` from evidence that resolves in the vault.

    Arguments the command line gives that are not usable values (``target`` not a DID or
    my own, ``context``, ``confidence`` or ``ttl`` out of bounds) raise UsageError."""
    if not is_did(target):
        raise UsageError(f"--to must be a did:hn DID, not {target!r}")
    if target == me.did:
        raise UsageError("--to is your own DID: a trust link to yourself measures nothing")
    try:
        proto.check_context(context)
    except MalformedDocument as exc:
        raise UsageError(f"--context: {exc.message}") from None
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        raise UsageError(f"--confidence must be within [0, 1], not {confidence:g}")
    limit = max_age(home)
    ttl_seconds = limit if ttl is None else ttl
    if not 0 < ttl_seconds <= limit:
        raise UsageError(f"--ttl must be within 1..{limit} seconds (policy trust.max_age), not {ttl_seconds}")
    if evidence_ids:
        items = ev.resolve_for(home, target, evidence_ids)
    else:
        items = ev.collect(home, target)
        if not items:
            raise ev.EvidenceError(
                f"no evidence of cooperation with {target} in this vault (shards exchanged, artefacts "
                "mirrored from them, backups held for each other, receipts); nothing to derive")
    evidence = proto.normalise_evidence([i.as_dict() for i in items])
    doc = proto.build_link(me.keys, target, evidence, context=context, ttl_seconds=ttl_seconds,
                           issued_at=timefmt.now_iso(), override=confidence)
    path = link_path(home, me, doc)
    with home.lock():
        atomic.write_bytes(path, canonical({"link": doc, "evidence": evidence}))
        home.append_event(me.keys, "trust.link", {
            "id": doc["id"], "to": target, "context": context, "confidence": doc["confidence"],
            "confidence_source": doc["confidence_source"], "evidence": [e["id"] for e in evidence]})
    return StoredLink(doc, evidence, proto.link_expires(doc, limit), True, "mine")


# -- reading ------------------------------------------------------------------------------
class LinkRefused(VerificationError):
    """A stored link file that does not verify (edited on disk, say): never counted."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"trust link {path.name} is refused: {reason}")
        self.path = path
        self.reason = reason

    def view(self, home: Home) -> dict[str, Any]:
        """What `hn trust link list` shows of it: the id and target its place names, and why."""
        tail = self.path.parent.name
        return {"id": self.path.stem, "to": f"did:hn:{tail}", "reason": self.reason,
                "file": str(self.path.relative_to(home.root)) if self.path.is_relative_to(home.root) else str(self.path)}


def evidence_list(value: Any) -> list[dict[str, Any]]:
    """The evidence kept beside a link, as read from a file: a list of JSON objects, else refused."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MalformedDocument("the evidence beside the link is not a list of JSON objects")
    return value


def read_link_file(path: Path, history: Any, limit: int, now: float) -> StoredLink:
    """One stored link, verified, and where it must be: ``<to tail>/<id>.json``."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise MalformedDocument("file too large")
        raw = loads_canonical(path.read_bytes(), max_bytes=MAX_FILE)
        doc = proto.verify_link(raw.get("link") if isinstance(raw, dict) else None, history)
        evidence = proto.verify_link_evidence(doc, evidence_list(raw.get("evidence")))
        if path.stem != doc["id"] or path.parent.name != did_tail(doc["to"]):
            raise VerificationError("file name does not match the link id and target")
    except (HnError, OSError) as exc:
        message = exc.message if isinstance(exc, HnError) else (exc.strerror or str(exc))
        raise LinkRefused(path, message) from exc
    expires = proto.link_expires(doc, limit)
    return StoredLink(doc, evidence, expires, expires > now, "mine")


def checked_links(home: Home, me: Identity, target: str | None = None) -> tuple[list[StoredLink], list[LinkRefused]]:
    """My stored links (about ``target`` only, if given) that verify, and the ones refused."""
    folder = links_dir(home, me)
    pattern = f"{did_tail(target)}/*.json" if target is not None else "*/*.json"
    limit, now = max_age(home), timefmt.now()
    out: list[StoredLink] = []
    refused: list[LinkRefused] = []
    if folder.is_dir():
        for path in sorted(folder.glob(pattern)):
            if path.name.startswith("."):
                continue
            try:
                out.append(read_link_file(path, me.history, limit, now))
            except LinkRefused as exc:
                log.warning("trust.link.refused", extra={"hn": {"path": str(path), "error": exc.message}})
                refused.append(exc)
    out.sort(key=lambda s: (s.link["to"], s.link["context"]))
    return out, refused


def my_links(home: Home, me: Identity, *, strict: bool = True,
             target: str | None = None) -> tuple[list[StoredLink], list[str]]:
    """My stored links (about ``target`` only, if given), verified. Tampered ones raise (strict) or are reported."""
    out, refused = checked_links(home, me, target)
    if strict and refused:
        raise refused[0]
    return out, [r.message for r in refused]


def friend_links(home: Home, me: Identity, target: str | None = None) -> tuple[list[StoredLink], list[str]]:
    """Friends' link headers from the cache, each verified again; bad ones are reported."""
    root = home.path("cache", "trust")
    limit, now = max_age(home), timefmt.now()
    out: list[StoredLink] = []
    refused: list[str] = []
    if not root.is_dir():
        return out, refused
    for folder in sorted(root.iterdir()):
        path = folder / "links.json"
        if not path.is_file():
            continue
        owner = "did:hn:" + folder.name
        try:
            history = identities.require_history(home, owner)
            raw = loads_canonical(path.read_bytes(), max_bytes=MAX_FILE)
            headers = raw.get("links") if isinstance(raw, dict) else None
            if not isinstance(headers, list):
                raise MalformedDocument("links.json has no links list")
        except (HnError, OSError) as exc:
            refused.append(f"cached links of {owner}: {exc}")
            continue
        for header in headers:
            if target is not None and isinstance(header, dict) and header.get("to") != target:
                continue
            try:
                doc = proto.verify_link(header, history)
                if doc["from"] != owner:
                    raise VerificationError(f"link is from {doc['from']}, cached as {owner}")
            except HnError as exc:
                refused.append(f"a cached link of {owner} is refused: {exc.message}")
                continue
            if doc["from"] == me.did:
                continue
            expires = proto.link_expires(doc, limit)
            out.append(StoredLink(doc, [], expires, expires > now, "friend"))
    return out, refused


def live_about(home: Home, me: Identity, target: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The live links about ``target`` I hold: mine and the ones friends exposed to me."""
    mine, refused = my_links(home, me, strict=False, target=target)
    theirs, refused_theirs = friend_links(home, me, target)
    docs = [s.link for s in mine + theirs if s.live and s.link["to"] == target]
    return docs, refused + refused_theirs


def save_friend_links(home: Home, owner: str, headers: list[dict[str, Any]]) -> None:
    body = {"owner": owner, "fetched_at": timefmt.now_iso(), "links": headers}
    atomic.write_bytes(friend_cache(home, owner), canonical(body))
