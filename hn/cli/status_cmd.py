"""`hn status`: this vault's node, its peers and their last sync results."""

from __future__ import annotations

from typing import Any

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, kv, table
from hn.errors import HnError
from hn.vault import identities, serving
from hn.vault.home import Home

DHT_STATUS_TIMEOUT = 5.0


def register(root: typer.Typer) -> None:
    root.command("status")(status)


def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """The node (running or not), federation peers with health, and last sync results."""
    from hn.federation import service

    home = STATE.home  # refuses a folder that holds no vault
    me = identities.load(home)
    # Running means holding the vault's serve lock; run/node.json says where it listens
    # (a pid alone could be another process's by now).
    node: dict[str, Any] = {"running": serving.served(home.root) is not None}
    info = serving.node_info(home.root) if node["running"] else None
    if info is not None:  # a file that holds no object says nothing of where it listens
        node = {**info, "running": True}
    peers = service.listing(home)
    counts: dict[str, int] = {}
    for peer in peers:
        counts[peer["health"]] = counts.get(peer["health"], 0) + 1
    dht = _dht_status(home) if node["running"] and node.get("dht") else None
    data = {"identity": me.public_info(), "node": node, "dht": dht, "peers": peers, "health": counts}

    def human(d: dict[str, Any]) -> None:
        kv({"identity": f"{me.alias} {me.did}",
            "node": f"running at {node.get('base_url')}" if node["running"] else "not running",
            "dht": _dht_line(dht) if node["running"] else "-",
            "peers": ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"})
        if peers:
            table(None, ["did", "health", "last sync", "error"],
                  [[p["did"], p["health"], p["last_sync"] or "-", p["last_error"] or ""] for p in peers])
        else:
            console.print("no federation peers yet (`hn mcp federate add DID URL`)")

    emit(data, as_json, human)


def _dht_status(home: Home) -> dict[str, Any]:
    """The running node's DHT counters (its local status route), or why they are unknown."""
    import asyncio

    from hn.dht import control

    try:
        return asyncio.run(control.call(home, "/local/dht/status", None, timeout=DHT_STATUS_TIMEOUT))
    except HnError as exc:
        return {"error": exc.message}


def _dht_line(dht: dict[str, Any] | None) -> str:
    if dht is None:
        return "off (the node runs without a DHT)"
    if "error" in dht:
        return f"unknown: {dht['error']}"
    return (f"{dht.get('listen')}: {dht.get('contacts')} contacts, {dht.get('records')} records held, "
            f"{dht.get('skew_refused')} refused for clock skew")
