"""The picture of my trust graph: my links and the links friends exposed to me.

JSON and Graphviz DOT are produced here with no outside help; SVG is DOT rendered by
Graphviz's ``dot`` program when it is installed (the optional system package
``graphviz``), and refused with a plain message when it is not.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from hn.errors import HnError, InputError, MalformedDocument, UsageError
from hn.proto.canonical import loads_strict
from hn.trust import links
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity

FORMATS = ("json", "dot", "svg")
DOT_TIMEOUT = 60


class GraphvizMissing(HnError):
    """SVG needs Graphviz: install the `graphviz` system package (apt-get install graphviz), or use --format dot or json."""

    code = "graphviz_missing"


def _alias(home: Home, me: Identity, did: str) -> str:
    if did == me.did:
        return me.alias
    path = identities.contact_path(home, did)
    if path.exists():
        try:
            doc = loads_strict(path.read_bytes(), max_bytes=1 << 20)
        except (MalformedDocument, OSError):
            return ""
        alias = doc.get("alias") if isinstance(doc, dict) else None
        if isinstance(alias, str):
            return alias
    return ""


def build(home: Home, me: Identity, include_expired: bool = False) -> dict[str, Any]:
    mine, refused = links.my_links(home, me, strict=False)
    theirs, refused_theirs = links.friend_links(home, me)
    edges = []
    for stored in mine + theirs:
        if not stored.live and not include_expired:
            continue
        view = stored.view(with_evidence=False)
        edges.append({k: view[k] for k in ("id", "from", "to", "context", "confidence", "confidence_source",
                                            "expires_at", "live", "source")})
    edges.sort(key=lambda e: (e["from"], e["to"], e["context"]))
    dids = sorted({me.did} | {e["from"] for e in edges} | {e["to"] for e in edges})
    nodes = [{"did": d, "alias": _alias(home, me, d), "me": d == me.did} for d in dids]
    return {"observer": me.did, "nodes": nodes, "edges": edges, "refused": refused + refused_theirs}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: dict[str, Any]) -> str:
    lines = ["digraph trust {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for node in graph["nodes"]:
        # DOT's \n escape breaks the label line; it must survive the quoting of each part.
        parts = ([node["alias"]] if node["alias"] else []) + [node["did"][:20] + "…"]
        label = '"' + "\\n".join(_quote(p)[1:-1] for p in parts) + '"'
        style = ', style="rounded,bold"' if node["me"] else ""
        lines.append(f"  {_quote(node['did'])} [label={label}{style}];")
    for edge in graph["edges"]:
        label = f"{float(edge['confidence']):.2f}" + ("" if edge["context"] == "general" else f" {edge['context']}")
        attrs = [f"label={_quote(label)}", f"penwidth={1 + 3 * float(edge['confidence']):.2f}"]
        if edge["source"] == "friend":
            attrs.append("style=dashed")
        if not edge["live"]:
            attrs.append("color=gray")
        lines.append(f"  {_quote(edge['from'])} -> {_quote(edge['to'])} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(dot: str) -> bytes:
    binary = shutil.which("dot")
    if binary is None:
        raise GraphvizMissing()
    try:
        proc = subprocess.run([binary, "-Tsvg"], input=dot.encode("utf-8"), capture_output=True,
                              timeout=DOT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"Graphviz dot failed: {exc}") from exc
    if proc.returncode != 0:
        raise InputError(f"Graphviz dot failed: {proc.stderr.decode('utf-8', 'replace').strip()[:200]}")
    return proc.stdout


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt
