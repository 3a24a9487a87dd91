"""trust_link@1 and reputation@1: signed, evidence-backed closeness (spec/trust_link@1.md, spec/reputation@1.md).

A trust link is what one person measured about their cooperation with another. The
signed link carries a commitment (``evidence_digest``) to the evidence it cites, not the
evidence itself, so the signed document alone is the "header" friends may see, while the
owner keeps the evidence list beside it and anyone holding both can check they match.

Everything here is pure: the confidence function, the aggregate, building and checking
documents. The caller passes in the clock.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hn.errors import MalformedDocument, VerificationError
from hn.proto import timefmt
from hn.proto.canonical import doc_digest, hexdigest, is_hex_digest
from hn.proto.identity import KeyHistory
from hn.proto.keys import IdentityKeys, is_did
from hn.proto.signed import check_envelope, require, sign_document, verify_document

LINK_TYPE = "trust_link@1"
REPUTATION_TYPE = "reputation@1"

# Evidence kinds and the weight one item of that kind contributes (before decay). A backup
# held for each other means more than a mirrored public file: weights rank the cost of the
# cooperation to the person who gave it.
KIND_WEIGHTS: dict[str, float] = {"backup": 0.35, "receipt": 0.25, "shard": 0.2, "mirror": 0.1}
PER_KIND_CAP = 5
HALF_LIFE = 90 * 24 * 3600
ROUND = 4

MAX_EVIDENCE = 4096
MAX_LINKS = 10_000
MAX_TTL = 10 * 365 * 24 * 3600
CONTEXT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
EVIDENCE_ID_RE = re.compile(r"^(shard|mirror|backup|receipt):[A-Za-z0-9._/-]{1,300}$")
DEFAULT_CONTEXT = "general"


def _number(value: Any, what: str) -> float:
    # JCS writes 1.0 as 1, so a confidence of exactly 0 or 1 comes back as an int.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedDocument(f"{what} must be a number")
    return float(value)


def _confidence(value: Any, what: str) -> float:
    number = _number(value, what)
    if not 0.0 <= number <= 1.0:
        raise MalformedDocument(f"{what} must be within [0, 1]")
    return number


def round_confidence(value: float) -> float:
    return round(min(1.0, max(0.0, value)), ROUND)


def check_context(context: str) -> str:
    if not CONTEXT_RE.match(context):
        raise MalformedDocument(
            f"context {context!r}: use lowercase letters, digits, '.', '_' or '-' (at most 64)")
    return context


# -- evidence ---------------------------------------------------------------------------
def check_evidence_item(item: Any) -> dict[str, Any]:
    what = "trust_link@1 evidence"
    item_id = require(item, "id", str, what)
    kind = require(item, "kind", str, what)
    if not EVIDENCE_ID_RE.match(item_id) or item_id.split(":", 1)[0] != kind:
        raise MalformedDocument(f"evidence id {item_id!r} is not of the form KIND:REF")
    if kind not in KIND_WEIGHTS:
        raise MalformedDocument(f"unknown evidence kind {kind!r}")
    timefmt.parse(require(item, "at", str, what), "evidence at")
    if not is_hex_digest(require(item, "digest", str, what)):
        raise MalformedDocument(f"evidence {item_id}: digest is not a hex digest")
    if set(item) != {"id", "kind", "at", "digest"}:
        raise MalformedDocument(f"evidence {item_id}: unexpected fields")
    return item


def normalise_evidence(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence sorted by id, duplicates refused: the canonical list the digest commits to."""
    out = sorted((check_evidence_item(dict(i)) for i in items), key=lambda i: i["id"].encode("utf-8"))
    for a, b in zip(out, out[1:]):
        if a["id"] == b["id"]:
            raise MalformedDocument(f"evidence {a['id']} is listed twice")
    if len(out) > MAX_EVIDENCE:
        raise MalformedDocument(f"a trust link cites at most {MAX_EVIDENCE} pieces of evidence")
    return out


def evidence_digest(items: list[dict[str, Any]]) -> str:
    return doc_digest(normalise_evidence(items))


def derive_confidence(items: list[dict[str, Any]]) -> float:
    """The documented confidence function (spec/trust_link@1.md, "Confidence").

    Noisy-or over the evidence: each item contributes weight(kind) * 2^(-age/HALF_LIFE),
    where age is measured from the newest item (not from now, so the same evidence always
    gives the same number; staleness against the clock is handled by the link's expiry).
    Only the newest PER_KIND_CAP items of each kind count, so mirroring a hundred public
    files cannot outweigh one backup.
    """
    evidence = normalise_evidence(items)
    if not evidence:
        return 0.0
    newest = max(timefmt.parse(i["at"]) for i in evidence)
    remaining = 1.0
    for kind in sorted(KIND_WEIGHTS):
        of_kind = sorted((i for i in evidence if i["kind"] == kind),
                         key=lambda i: (-timefmt.parse(i["at"]), i["id"]))[:PER_KIND_CAP]
        for item in of_kind:
            age = max(0.0, newest - timefmt.parse(item["at"]))
            remaining *= 1.0 - KIND_WEIGHTS[kind] * 2.0 ** (-age / HALF_LIFE)
    return round_confidence(1.0 - remaining)


# -- trust_link@1 -----------------------------------------------------------------------
def link_id(source: str, target: str, context: str) -> str:
    """One live link per (from, to, context): re-deriving replaces it."""
    return hexdigest(f"{LINK_TYPE}\n{source}\n{target}\n{context}".encode())[:32]


def build_link(
    keys: IdentityKeys, target: str, evidence: list[dict[str, Any]], *, context: str, ttl_seconds: int,
    issued_at: str, override: float | None = None,
) -> dict[str, Any]:
    if not is_did(target):
        raise MalformedDocument(f"not a did:hn DID: {target!r}")
    if target == keys.did:
        raise MalformedDocument("a trust link to yourself measures nothing")
    check_context(context)
    if not 0 < ttl_seconds <= MAX_TTL:
        raise MalformedDocument(f"ttl_seconds must be within 1..{MAX_TTL}")
    items = normalise_evidence(evidence)
    if not items:
        raise MalformedDocument("a trust link needs at least one piece of evidence")
    derived = derive_confidence(items)
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    doc: dict[str, Any] = {
        "type": LINK_TYPE,
        "id": link_id(keys.did, target, context),
        "from": keys.did,
        "to": target,
        "context": context,
        "confidence": derived if override is None else round_confidence(_confidence(override, "confidence")),
        "confidence_source": "derived" if override is None else "override",
        "derived_confidence": derived,
        "evidence_count": len(items),
        "evidence_kinds": kinds,
        "evidence_digest": doc_digest(items),
        "last_seen": max(items, key=lambda i: timefmt.parse(i["at"]))["at"],
        "issued_at": issued_at,
        "ttl_seconds": ttl_seconds,
    }
    return sign_document(doc, keys)


def check_link(doc: Any) -> dict[str, Any]:
    """Shape of a trust_link@1 header, before its signature is checked."""
    check_envelope(doc, LINK_TYPE)
    what = LINK_TYPE
    source = require(doc, "from", str, what)
    target = require(doc, "to", str, what)
    if source != doc["signer"]:
        raise VerificationError("trust_link@1 from differs from its signer")
    if not is_did(target) or target == source:
        raise MalformedDocument("trust_link@1 to must be another did:hn DID")
    context = check_context(require(doc, "context", str, what))
    if require(doc, "id", str, what) != link_id(source, target, context):
        raise VerificationError("trust_link@1 id does not match from, to and context")
    confidence = _confidence(doc.get("confidence"), "trust_link@1 confidence")
    derived = _confidence(doc.get("derived_confidence"), "trust_link@1 derived_confidence")
    source_kind = require(doc, "confidence_source", str, what)
    if source_kind not in ("derived", "override"):
        raise MalformedDocument("trust_link@1 confidence_source must be derived or override")
    if source_kind == "derived" and confidence != derived:
        raise VerificationError("trust_link@1 says derived but its confidence differs from derived_confidence")
    count = require(doc, "evidence_count", int, what)
    if not 1 <= count <= MAX_EVIDENCE:
        raise MalformedDocument("trust_link@1 evidence_count out of range")
    kinds = require(doc, "evidence_kinds", dict, what)
    if any(k not in KIND_WEIGHTS or isinstance(v, bool) or not isinstance(v, int) or v < 1 for k, v in kinds.items()):
        raise MalformedDocument("trust_link@1 evidence_kinds is malformed")
    if sum(kinds.values()) != count:
        raise MalformedDocument("trust_link@1 evidence_kinds does not add up to evidence_count")
    if not is_hex_digest(require(doc, "evidence_digest", str, what)):
        raise MalformedDocument("trust_link@1 evidence_digest is not a hex digest")
    timefmt.parse(require(doc, "last_seen", str, what), "last_seen")
    timefmt.parse(require(doc, "issued_at", str, what), "issued_at")
    ttl = require(doc, "ttl_seconds", int, what)
    if not 0 < ttl <= MAX_TTL:
        raise MalformedDocument("trust_link@1 ttl_seconds out of range")
    return doc


def link_expires(doc: dict[str, Any], max_age: int | None = None) -> float:
    """When the link stops being live: its own ttl, shortened by the reader's max age."""
    ttl = int(doc["ttl_seconds"]) if max_age is None else min(int(doc["ttl_seconds"]), max_age)
    return timefmt.parse(doc["issued_at"]) + ttl


def verify_link(doc: Any, history: KeyHistory, *, now: float | None = None,
                max_age: int | None = None) -> dict[str, Any]:
    check_link(doc)
    verify_document(doc, history, LINK_TYPE)
    if now is not None and link_expires(doc, max_age) <= now:
        raise VerificationError(f"trust_link@1 {doc['id']} from {doc['from']} has expired")
    return doc


def verify_link_evidence(doc: dict[str, Any], evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evidence list kept beside a link must be the one the signature committed to."""
    items = normalise_evidence(evidence)
    if doc_digest(items) != doc["evidence_digest"] or len(items) != doc["evidence_count"]:
        raise VerificationError(f"trust_link@1 {doc['id']}: evidence does not match evidence_digest")
    if doc["derived_confidence"] != derive_confidence(items):
        raise VerificationError(f"trust_link@1 {doc['id']}: derived_confidence does not follow from its evidence")
    return items


# -- reputation@1 -----------------------------------------------------------------------
def aggregate(confidences: list[float]) -> dict[str, Any]:
    """avg, count, min, max and population stddev, rounded; all zero for no links."""
    if not confidences:
        return {"avg_confidence": 0, "count": 0, "min_confidence": 0, "max_confidence": 0, "stddev": 0}
    values = sorted(confidences)
    # Clamped: fsum/len can land one ulp outside [min, max] when all values are equal.
    mean = min(max(math.fsum(values) / len(values), values[0]), values[-1])
    variance = math.fsum((v - mean) ** 2 for v in values) / len(values)
    return {
        "avg_confidence": round_confidence(mean),
        "count": len(values),
        "min_confidence": round_confidence(values[0]),
        "max_confidence": round_confidence(values[-1]),
        "stddev": round(math.sqrt(variance), ROUND),
    }


def reputation_body(observer: str, target: str, links: list[dict[str, Any]], policy_ref: str) -> dict[str, Any]:
    """Everything of a reputation@1 except seq, issued_at and the signature."""
    if not is_did(target):
        raise MalformedDocument(f"not a did:hn DID: {target!r}")
    live = sorted(links, key=lambda d: (d["from"], d["id"]))
    for doc in live:
        if doc["to"] != target:
            raise MalformedDocument(f"trust link {doc['id']} is about {doc['to']}, not {target}")
    return {
        "type": REPUTATION_TYPE,
        "observer": observer,
        "target": target,
        "links": [{"id": f"trust_link:{d['id']}", "from": d["from"], "context": d["context"],
                   "confidence": d["confidence"]} for d in live],
        "aggregate": aggregate([float(d["confidence"]) for d in live]),
        "policy_ref": policy_ref,
    }


def sign_reputation(keys: IdentityKeys, body: dict[str, Any], seq: int, issued_at: str) -> dict[str, Any]:
    if body.get("observer") != keys.did:
        raise MalformedDocument("reputation@1 observer must be the signer")
    return sign_document({**body, "seq": seq, "issued_at": issued_at}, keys)


def check_reputation(doc: Any) -> dict[str, Any]:
    check_envelope(doc, REPUTATION_TYPE)
    what = REPUTATION_TYPE
    if require(doc, "observer", str, what) != doc["signer"]:
        raise VerificationError("reputation@1 observer differs from its signer")
    if not is_did(require(doc, "target", str, what)):
        raise MalformedDocument("reputation@1 target is not a DID")
    if require(doc, "seq", int, what) < 1:
        raise MalformedDocument("reputation@1 seq must be at least 1")
    timefmt.parse(require(doc, "issued_at", str, what), "issued_at")
    require(doc, "policy_ref", str, what)
    links = require(doc, "links", list, what)
    if len(links) > MAX_LINKS:
        raise MalformedDocument(f"reputation@1 lists more than {MAX_LINKS} links")
    confidences = []
    for link in links:
        ref = require(link, "id", str, "reputation@1 link")
        if not ref.startswith("trust_link:") or len(ref) != len("trust_link:") + 32:
            raise MalformedDocument("reputation@1 link id is not trust_link:<id>")
        if not is_did(require(link, "from", str, "reputation@1 link")):
            raise MalformedDocument("reputation@1 link from is not a DID")
        check_context(require(link, "context", str, "reputation@1 link"))
        confidences.append(_confidence(link.get("confidence"), "reputation@1 link confidence"))
    require(doc, "aggregate", dict, what)
    # The aggregate is a function of the listed links: a signer cannot inflate one without the other.
    if doc["aggregate"] != aggregate(confidences):
        raise VerificationError("reputation@1 aggregate does not follow from its links")
    return doc


def verify_reputation(doc: Any, history: KeyHistory) -> dict[str, Any]:
    check_reputation(doc)
    return verify_document(doc, history, REPUTATION_TYPE)
