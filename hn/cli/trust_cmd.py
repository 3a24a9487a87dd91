"""`hn trust`: evidence-backed trust links, reputation aggregates and the trust graph."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from hn.cli.context import STATE, warn
from hn.cli.output import console, emit, failed_line, out_file, table
from hn.errors import HnError, InputError, NotFound, UsageError, VerificationError
from hn.proto import trust as proto
from hn.proto.keys import is_did
from hn.vault import atomic, identities

app = typer.Typer(help="Trust: links backed by evidence in the vault, reputation, the graph.", no_args_is_help=True)
link_app = typer.Typer(help="My trust links.", no_args_is_help=True)
rep_app = typer.Typer(help="Reputation aggregates (reputation@1).", no_args_is_help=True)
app.add_typer(link_app, name="link")
app.add_typer(rep_app, name="reputation")
JSON = typer.Option(False, "--json", help="Print one JSON document.")


def _split(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _did_option(value: str, option: str) -> str:
    """An option that names a person: a DID, else a usage error (exit 2)."""
    if not is_did(value):
        raise UsageError(f"{option} must be a did:hn DID, not {value!r}")
    return value


def _evidence_ids(value: Optional[str]) -> list[str]:
    ids = _split(value)
    for evidence_id in ids:
        if not proto.EVIDENCE_ID_RE.match(evidence_id):
            raise UsageError(f"--evidence {evidence_id!r} is not of the form shard:ID, mirror:TAIL/KIND/ID, "
                             "backup:ID or receipt:NAME")
    return ids


@link_app.command("derive")
def link_derive(
    to: str = typer.Option(..., "--to", help="The DID the link is about."),
    evidence: Optional[str] = typer.Option(None, "--evidence", help="Evidence ids, comma-separated "
                                           "(shard:ID, mirror:TAIL/KIND/ID, backup:ID, receipt:NAME); "
                                           "default: all evidence found for that DID."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Override the derived confidence "
                                               "(0..1); the override is recorded in the link."),
    context: str = typer.Option(proto.DEFAULT_CONTEXT, "--context", help="What the cooperation was about."),
    ttl: Optional[int] = typer.Option(None, "--ttl", help="Seconds the link stays live (at most trust.max_age)."),
    as_json: bool = JSON,
) -> None:
    """Derive (or re-derive) my signed trust_link@1 to a person from evidence in the vault."""
    from hn.trust import links

    ids = _evidence_ids(evidence)
    if evidence is not None and not ids:
        raise UsageError("--evidence is empty: name the evidence ids to cite, or leave --evidence out "
                         "to cite all evidence found")
    home = STATE.home
    me = identities.load(home)
    stored = links.derive(home, me, to, ids or None, context=context, confidence=confidence, ttl=ttl)
    data = {**stored.view(), "link": stored.link}
    emit(data, as_json, lambda d: console.print(
        f"link {d['id']} to {d['to']} ({d['context']}): confidence {d['confidence']}"
        + (f" (override; derived {d['derived_confidence']})" if d["confidence_source"] == "override" else "")
        + f" from {d['evidence_count']} piece(s) of evidence, live until {d['expires_at']}"))


@link_app.command("list")
def link_list(
    include_expired: bool = typer.Option(False, "--all", help="Include expired links."),
    as_json: bool = JSON,
) -> None:
    """List my trust links (every one verified: a tampered link file is listed as refused, never counted)."""
    from hn.trust import links

    home = STATE.home
    me = identities.load(home)
    mine, refused = links.checked_links(home, me)
    views = [s.view() for s in mine if s.live or include_expired]
    _say_refused([r.message for r in refused], "never counted (reputation, graph, what friends see)")
    emit({"links": views, "refused": [r.view(home) for r in refused]}, as_json, lambda d: table(
        None, ["id", "to", "context", "confidence", "evidence", "expires", "live"],
        [[v["id"][:12], v["to"], v["context"], v["confidence"], v["evidence_count"], v["expires_at"],
          "yes" if v["live"] else "expired"] for v in d["links"]]
        + [[r["id"][:12], r["to"], "", "", "", "", f"REFUSED: {r['reason']}"] for r in d["refused"]]))


def _say_refused(refused: list[str], consequence: str) -> None:
    """Links that failed verification are reported, not fatal: one warning on stderr."""
    if refused:
        warn(f"{len(refused)} trust link(s) refused, {consequence}: " + "; ".join(refused))


def _rep_view(doc: dict[str, Any], changed: bool | None, refused: list[str]) -> dict[str, Any]:
    out = {"target": doc["target"], "observer": doc["observer"], "seq": doc["seq"],
           "aggregate": doc["aggregate"], "links": [ln["id"] for ln in doc["links"]],
           "reputation": doc, "refused": refused}
    if changed is not None:
        out["changed"] = changed
    return out


def _rep_human(d: dict[str, Any]) -> None:
    agg = d["aggregate"]
    console.print(f"reputation of {d['target']} (seq {d['seq']}): avg {agg['avg_confidence']} over "
                  f"{agg['count']} live link(s), min {agg['min_confidence']}, max {agg['max_confidence']}, "
                  f"stddev {agg['stddev']}")


@rep_app.command("compute")
def reputation_compute(target: str = typer.Option(..., "--target", help="The DID to aggregate."),
                       as_json: bool = JSON) -> None:
    """Aggregate the live links about TARGET into a signed reputation@1 (same links: same document)."""
    from hn.trust import reputation

    _did_option(target, "--target")
    home = STATE.home
    me = identities.load(home)
    doc, changed, refused = reputation.compute(home, me, target)
    _say_refused(refused, "left out of the aggregate")
    emit(_rep_view(doc, changed, refused), as_json, _rep_human)


def _publish(target: str, as_json: bool) -> None:
    from hn.trust import reputation

    _did_option(target, "--target")
    home = STATE.home
    me = identities.load(home)
    doc, refused = reputation.publish(home, me, target)
    _say_refused(refused, "left out of the aggregate")
    data = {**_rep_view(doc, None, refused), "published": True, "route": f"/trust/{target}",
            "path": str(reputation.published_path(home, me.alias, target))}
    emit(data, as_json, lambda d: console.print(
        f"published reputation of {d['target']} (seq {d['seq']}, avg {d['aggregate']['avg_confidence']}, "
        f"{d['aggregate']['count']} link(s)); my node serves it at {d['route']} to whom trust.exposure allows"))


@rep_app.command("publish")
def reputation_publish(target: str = typer.Option(..., "--target", help="The DID whose aggregate to publish."),
                       as_json: bool = JSON) -> None:
    """Same as `hn trust publish`."""
    _publish(target, as_json)


@app.command("publish")
def publish(target: str = typer.Option(..., "--target", help="The DID whose aggregate to publish."),
            as_json: bool = JSON) -> None:
    """Compute and make my signed aggregate about TARGET available on my node (GET /trust/TARGET)."""
    _publish(target, as_json)


@rep_app.command("fetch")
def reputation_fetch(
    observer: str = typer.Option(..., "--from", help="The friend whose reputation@1 to fetch."),
    target: str = typer.Option(..., "--target", help="The DID it is about."),
    url: Optional[str] = typer.Option(None, "--url", help="Their node (default: from the federation roster)."),
    as_json: bool = JSON,
) -> None:
    """Fetch a friend's published reputation@1 (signed request), verify it and its seq."""
    from hn.federation import roster
    from hn.trust import remote

    _did_option(observer, "--from")
    _did_option(target, "--target")
    if url is not None:
        try:
            url = roster.check_node_url(url, "--url")
        except InputError as exc:
            raise UsageError(exc.message) from None
    home = STATE.home
    me = identities.load(home)
    if url is None:
        try:
            url = str(roster.get(home, observer)["url"])
        except NotFound as exc:
            raise NotFound(f"{exc.message}: pass --url with their node's URL, or add them "
                           "(`hn mcp federate add DID URL`)") from None
    base = url
    doc = asyncio.run(remote.fetch_reputation(home, me, base, observer, target))
    emit(_rep_view(doc, None, []), as_json, _rep_human)


@app.command("fetch")
def fetch(as_json: bool = JSON) -> None:
    """Fetch the link headers my friends expose to me (GET /trust/DID/links), verified, into the cache.
    Exits 1 if any friend's fetch failed (the others' are kept)."""
    from hn.trust import remote

    home = STATE.home
    me = identities.load(home)
    results = asyncio.run(remote.fetch_all(home, me))
    data = {"peers": results, "ok": all(r["ok"] for r in results)}
    emit(data, as_json, lambda d: table(
        None, ["friend", "result", "links"],
        [[r["did"], "ok" if r["ok"] else f"FAILED: {r['error']}", r["links"]] for r in d["peers"]]))
    if not data["ok"]:
        raise HnError(failed_line("friend", "could not be fetched", "did", results))


@app.command("graph")
def graph(
    fmt: str = typer.Option("json", "--format", help="json | dot | svg (svg needs Graphviz `dot`)."),
    out_value: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                            help="Write the picture to FILE instead of stdout."),
    fetch_first: bool = typer.Option(False, "--fetch", help="Fetch friends' link headers first."),
    include_expired: bool = typer.Option(False, "--all", help="Include expired links (drawn grey)."),
    as_json: bool = JSON,
) -> None:
    """My links and the links friends exposed to me, as JSON, Graphviz DOT or SVG."""
    from hn.trust import graph as trust_graph
    from hn.trust import remote

    trust_graph.check_format(fmt)
    # A folder or an empty name: a usage error, before any work.
    out = out_file(out_value) if out_value is not None else None
    home = STATE.home
    me = identities.load(home)
    if fetch_first:
        for failed in (r for r in asyncio.run(remote.fetch_all(home, me)) if not r["ok"]):
            warn(f"fetching the links of {failed['did']} failed, the graph shows what was fetched before: "
                 f"{failed['error']}")
    data = trust_graph.build(home, me, include_expired)
    _say_refused(data["refused"], "left out of the graph")
    if fmt == "json":
        payload = None
    else:
        dot = trust_graph.to_dot(data)
        payload = dot.encode("utf-8") if fmt == "dot" else trust_graph.to_svg(dot)
    if out is not None:
        import json

        body = payload if payload is not None else (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        atomic.write_bytes(out, body)
        summary = {"format": fmt, "out": str(out), "bytes": len(body), "nodes": len(data["nodes"]),
                   "edges": len(data["edges"]), "refused": data["refused"]}
        emit(summary, as_json, lambda d: console.print(
            f"wrote {d['format']} graph ({d['nodes']} people, {d['edges']} links) to {d['out']}"))
        return
    if fmt == "json":
        emit(data, True)
    elif as_json:
        emit({"format": fmt, fmt: payload.decode("utf-8") if payload else "", "nodes": len(data["nodes"]),
              "edges": len(data["edges"]), "refused": data["refused"]}, True)
    else:
        sys.stdout.write(payload.decode("utf-8") if payload else "")
        sys.stdout.flush()


@app.command("verify")
def verify(path: Path = typer.Argument(..., help="A stored link file or a trust_link@1 / reputation@1 JSON file."),
           as_json: bool = JSON) -> None:
    """Verify a trust_link@1 (with its evidence, when present) or reputation@1 against its signer."""
    from hn.proto.canonical import loads_strict
    from hn.trust import links

    home = STATE.home
    try:
        raw = loads_strict(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    except HnError as exc:
        raise type(exc)(f"{path}: {exc.message}") from exc
    doc: Any = raw.get("link") if isinstance(raw, dict) and "link" in raw else raw
    if not isinstance(doc, dict):
        raise VerificationError(f"{path} is neither a trust_link@1 nor a reputation@1")
    kind = doc.get("type")
    if kind == proto.LINK_TYPE:
        proto.check_link(doc)  # its shape first: a missing signer is named as such
        history = identities.require_history(home, doc["signer"])
        proto.verify_link(doc, history)
        if isinstance(raw, dict) and "evidence" in raw:
            proto.verify_link_evidence(doc, links.evidence_list(raw["evidence"]))
        data = {"ok": True, "type": kind, "id": doc["id"], "from": doc["from"], "to": doc["to"],
                "evidence_checked": isinstance(raw, dict) and "evidence" in raw}
    elif kind == proto.REPUTATION_TYPE:
        proto.check_reputation(doc)
        proto.verify_reputation(doc, identities.require_history(home, doc["signer"]))
        data = {"ok": True, "type": kind, "observer": doc["observer"], "target": doc["target"], "seq": doc["seq"]}
    else:
        raise VerificationError(f"{path} is neither a trust_link@1 nor a reputation@1")
    emit(data, as_json, lambda d: console.print(f"ok: {d['type']} verifies"))
