"""`hn mcp`: run the node, and manage federation with friends' nodes."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, failed_line, say, table
from hn.errors import HnError, UsageError
from hn.vault.home import Home

app = typer.Typer(help="The node: serve, federate with friends, relay.", no_args_is_help=True)
federate_app = typer.Typer(help="Federation with friends' nodes (index@2).", no_args_is_help=True)
app.add_typer(federate_app, name="federate")
JSON = typer.Option(False, "--json", help="Print one JSON document.")
NO_PEERS = "no federation peers yet (`hn mcp federate add DID URL`)"


@app.command("serve")
def serve(
    listen: Optional[str] = typer.Option(None, "--listen", help="HOST:PORT for HTTP (default 127.0.0.1:7733)."),
    public_url: Optional[str] = typer.Option(None, "--public-url", help="URL others reach this node at."),
    profile: Optional[str] = typer.Option(None, "--profile", help="'federation': always-on node with written config."),
    dht_listen: Optional[str] = typer.Option(None, "--dht-listen", help="HOST:PORT for the UDP DHT node."),
    bootstrap: Optional[list[str]] = typer.Option(None, "--bootstrap", help="DHT bootstrap HOST:PORT (repeatable)."),
    no_dht: bool = typer.Option(False, "--no-dht", help="Do not run a DHT node."),
    relay_ttl: Optional[int] = typer.Option(None, "--relay-ttl", help="Seconds a relayed presence is kept at most."),
    sync_interval: Optional[float] = typer.Option(None, "--sync-interval", help="Seconds between background syncs."),
    log_json: bool = typer.Option(False, "--log-json", help="One JSON object per log line on stderr."),
) -> None:
    """Run this vault's node until SIGTERM/SIGINT; prints `MCP_READY {json}` once it accepts connections."""
    from hn.dht import config as dht_config
    from hn.errors import InputError
    from hn.federation.roster import check_node_url
    from hn.node import logs
    from hn.node import profile as node_profile
    from hn.node.app import parse_hostport
    from hn.node.app import serve as run

    try:  # an option value the node cannot use is a usage error, found before anything starts
        if public_url is not None:
            public_url = check_node_url(public_url, "--public-url")
        if listen is not None:
            parse_hostport(listen, "--listen")
        if dht_listen is not None:
            dht_config.parse_hostport(dht_listen, "--dht-listen")
        for peer in bootstrap or []:  # a name that does not resolve now is the DHT's to retry; a typo is not
            dht_config.parse_peer(peer, "--bootstrap")
    except InputError as exc:
        raise UsageError(exc.message) from exc
    for option, value in (("--sync-interval", sync_interval), ("--relay-ttl", relay_ttl)):
        if value is not None and not _positive_seconds(value):
            raise UsageError(f"{option} must be a positive number of seconds, not {value}")
    home = STATE.existing_home()  # before anything is written into a folder that holds no vault
    settings: dict[str, Any] = {}
    if profile is not None:
        if profile != "federation":
            raise UsageError(f"unknown profile {profile!r} (known: federation)")
        written = node_profile.ensure(home, {"listen": listen or "", "public_url": public_url or "",
                                             "dht_listen": dht_listen or ""})
        settings.update(node_profile.load(home))
        check_profile(settings)  # the options, checked above, replace some of its values below
        settings["profile"] = profile
        settings["profile_written"] = written
    _check_profile_policies(home)
    overrides = {"listen": listen, "public_url": public_url, "dht_listen": dht_listen, "relay_ttl": relay_ttl,
                 "sync_interval": sync_interval}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if bootstrap:
        settings["bootstrap"] = list(bootstrap)
    settings.setdefault("listen", "127.0.0.1:7733")
    settings.setdefault("bootstrap", [])
    settings["no_dht"] = no_dht
    settings["log_json"] = log_json or STATE.log_json
    logs.setup(settings["log_json"])
    try:
        asyncio.run(run(home, settings))
    except KeyboardInterrupt:
        pass


def _positive_seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_profile_policies(home: Home) -> None:
    """The profile file's policy values apply to the vault whenever it exists (hn.vault.policy):
    a node does not start with one it could not apply (say, a mistyped "friends"), nor with
    one config/policy.toml holds (the file edited by hand)."""
    from hn.errors import InputError
    from hn.trust import selectors
    from hn.vault import policy

    problems = policy.profile_problems(home, selectors.validate) + policy.file_problems(home, selectors.validate)
    if problems:
        raise InputError("; ".join(problems))


def check_profile(settings: dict[str, Any]) -> None:
    """The values of the profile's config file that options can also give, checked as the
    options are (a file edited by hand is named in the error)."""
    from hn.errors import InputError
    from hn.federation.roster import check_node_url

    where = " (from config/mcp.federation.toml)"
    if settings.get("public_url"):
        value = settings["public_url"]
        settings["public_url"] = check_node_url(value if isinstance(value, str) else repr(value),
                                                f"public_url{where}")
    # (The profile's relay ttl is a policy: hn.vault.policy.PROFILE_KEYS checks it.)
    value = settings.get("sync_interval")
    if value is not None and not _positive_seconds(value):
        raise InputError(f"sync_interval{where} must be a positive number of seconds, not {value!r}")


@federate_app.command("add")
def federate_add(did: str, url: str, as_json: bool = JSON) -> None:
    """Add a friend's node: fetches and pins their identity@1."""
    from hn.federation import service

    def human(d: dict[str, Any]) -> None:  # the alias is the peer's own text: shown safe, never as markup
        say("federating with {} {} at {}", d["alias"], d["did"], d["url"])
        if d["url_changed"]:
            say("URL changed from {} to {}", d["previous_url"], d["url"])

    emit(asyncio.run(service.add(STATE.home, did, url)), as_json, human)


@federate_app.command("remove")
def federate_remove(did: str, as_json: bool = JSON) -> None:
    """Stop federating with a friend's node (its cache is kept until pruned)."""
    from hn.federation import service

    emit(service.remove(STATE.home, did), as_json, lambda d: console.print(f"removed {d['did']}"))


@federate_app.command("list")
def federate_list(as_json: bool = JSON) -> None:
    """Friends' nodes with health (ok | stale | failing | new), last sync, cursor and root."""
    from hn.federation import service

    peers = service.listing(STATE.home)
    _warn_unusable()
    emit({"peers": peers}, as_json, lambda d: table(
        None, ["did", "url", "health", "last sync", "cursor", "root", "error"],
        [[p["did"], p["url"], p["health"], p["last_sync"] or "-", p["cursor"], (p["root"] or "-")[:16],
          p["last_error"] or ""] for p in d["peers"]]) if d["peers"] else console.print(NO_PEERS))


@federate_app.command("refresh")
def federate_refresh(mirror: bool = typer.Option(False, "--mirror", help="Also download the artefacts."),
                     peer: Optional[str] = typer.Option(None, "--peer", help="Only this DID."),
                     as_json: bool = JSON) -> None:
    """Pull new index slices from every friend now (works with or without a running node)."""
    from hn.federation import service

    results = asyncio.run(service.refresh(STATE.home, mirror=mirror, only=peer))
    _warn_unusable()
    data = {"peers": results, "ok": all(r["ok"] for r in results)}
    emit(data, as_json, lambda d: table(
        None, ["did", "result", "source", "entries", "mirrored", "root"],
        [[r["did"], "ok" + (" (unchanged)" if r["not_modified"] else "") if r["ok"] else f"FAILED: {r['error']}",
          r["source"] or "-", r["entries"], r["mirrored"], (r["root"] or "-")[:16]] for r in d["peers"]])
         if d["peers"] else console.print(f"nothing to refresh: {NO_PEERS}"))
    if results and not data["ok"]:
        raise HnError(failed_line("peer", "could not be refreshed", "did", results))


def _warn_unusable() -> None:
    """Roster entries edited by hand into something that is not a peer are named (they are
    kept in the file, and neither listed nor synced)."""
    from hn.cli.context import warn
    from hn.federation import roster

    for line in roster.unusable(STATE.home):
        warn(f"{line}: left out (fix it, or `hn mcp federate add DID URL`)")


def _optional_relay() -> None:
    from hn.optional import import_optional

    module = import_optional("hn.cli.relay_cmd")
    if module is not None:
        app.add_typer(module.app, name="relay")


_optional_relay()
