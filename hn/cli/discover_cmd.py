"""`hn discover`: publish this vault's dht_hint@1, resolve a DID to a verified presence@2."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, table
from hn.errors import InputError, UsageError

app = typer.Typer(help="Find nodes by DID: DHT hints, DNS TXT records, the local cache.", no_args_is_help=True)
cache_app = typer.Typer(help="The local cache of verified presences.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
JSON = typer.Option(False, "--json", help="Print one JSON document.")
BOOTSTRAP = typer.Option(None, "--bootstrap", help="DHT bootstrap HOST:PORT (repeatable; overrides config/dht.toml).")


def _hostport(value: str, option: str) -> tuple[str, int]:
    """A HOST:PORT option, checked before any work: a malformed one is a usage error."""
    from hn.dht import config as dht_config

    try:
        return dht_config.parse_peer(value, option)
    except InputError as exc:
        raise UsageError(exc.message) from None


def _bootstrap_option(values: Optional[list[str]]) -> Optional[list[str]]:
    for value in values or []:
        _hostport(value, "--bootstrap")
    return values


def _dns_name_option(value: Optional[str]) -> Optional[str]:
    from hn.dht import dns

    if value is not None:
        try:
            dns.record_name(value)
        except InputError as exc:
            raise UsageError(f"--dns-name: {exc.message}") from None
    return value


def _show_publish(data: dict[str, Any]) -> None:
    if "dht" in data:
        d = data["dht"]
        console.print(f"dht_hint@1 seq {data['hint']['seq']} stored at {d['acks']} node(s) "
                      f"({d['refused']} refused, {d['unreachable']} unreachable) via the {data['via']}")
    if "dns_txt" in data:
        console.print("add this DNS record:")
        console.print(data["dns_txt"]["line"])


@app.command("publish")
def publish(
    dht: bool = typer.Option(False, "--dht", help="Publish a signed dht_hint@1 (the default)."),
    dns_txt: bool = typer.Option(False, "--dns-txt", help="Print the DNS TXT record to add."),
    dns_name: Optional[str] = typer.Option(None, "--dns-name", help="Domain for the TXT record (default [dns] txt_name)."),
    bootstrap: Optional[list[str]] = BOOTSTRAP,
    as_json: bool = JSON,
) -> None:
    """Sign a dht_hint@1 for the current presence@2 and store it in the DHT."""
    from hn.dht import config as dht_config
    from hn.dht import control, service
    from hn.vault import identities

    bootstrap = _bootstrap_option(bootstrap)
    dns_name = _dns_name_option(dns_name)
    home = STATE.existing_home()
    want_dht = dht or not dns_txt
    me = identities.load(home)
    data: dict[str, Any]
    if want_dht and not bootstrap and control.running_node(home) is not None:
        data = asyncio.run(control.call(home, "/local/dht/publish",
                                        {"dht": True, "dns_txt": dns_txt, "dns_name": dns_name}))
    else:
        if want_dht and not bootstrap and not dht_config.bootstrap_list(home, None):
            if control.runs_without_dht(home):
                raise InputError("the node serving this vault runs without a DHT (--no-dht): restart it without "
                                 "--no-dht, or pass --bootstrap HOST:PORT to publish as a client")
            raise InputError("no node is running for this vault and no DHT bootstrap peers are set: start "
                             "`hn mcp serve`, or pass --bootstrap HOST:PORT (or set bootstrap in config/dht.toml) "
                             "to publish as a client")
        data = {"via": "client"}
        if want_dht:
            data = asyncio.run(service.run_client_publish(home, me, bootstrap))
        if dns_txt:
            data["dns_txt"] = service.dns_record(home, me, dns_name)
    emit(data, as_json, _show_publish)
    if want_dht and data["dht"]["acks"] == 0 and not data["dht"]["local"]:
        raise typer.Exit(1)


def _show_resolve(data: dict[str, Any]) -> None:
    presence = data.get("presence") or {}
    console.print(f"{data['did']} via {data['source']}" + (" (cache fallback)" if data["fallback"] else ""))
    if data.get("hint_seq") is not None:
        console.print(f"  hint seq {data['hint_seq']}")
    console.print(f"  presence: {data.get('presence_url')}")
    if presence:
        console.print(f"  node url: {presence.get('url')}  seq {presence.get('seq')}  expires {presence.get('expires_at')}")
    if data.get("detail"):
        console.print(f"  {data['detail']}")


@app.command("resolve")
def resolve(
    did: str,
    hint_only: bool = typer.Option(False, "--hint-only", help="Verify the DHT hint only; do not fetch the presence."),
    dht_only: bool = typer.Option(False, "--dht-only", help="Use only the DHT."),
    dns_only: bool = typer.Option(False, "--dns-only", help="Use only DNS TXT (--dns-name, else [dns] txt_name)."),
    cache_fallback: bool = typer.Option(False, "--cache-fallback", help="If the network fails, use the last verified presence."),
    dns_name: Optional[str] = typer.Option(None, "--dns-name", help="Domain whose _hn TXT record names the DID."),
    dns_server: Optional[str] = typer.Option(None, "--dns-server", help="DNS server HOST:PORT (default: the system's)."),
    bootstrap: Optional[list[str]] = BOOTSTRAP,
    as_json: bool = JSON,
) -> None:
    """Resolve a DID: hint -> presence URL -> verified presence@2."""
    from hn.dht import config as dht_config
    from hn.dht import control, service

    if dht_only and dns_only:
        raise UsageError("--dht-only and --dns-only exclude each other")
    try:
        service.check_did_arg(did)
    except InputError as exc:
        raise UsageError(exc.message) from None
    bootstrap = _bootstrap_option(bootstrap)
    dns_name = _dns_name_option(dns_name)
    if dns_server is not None:
        _hostport(dns_server, "--dns-server")
    home = STATE.existing_home()  # a read: no vault is made for it
    server = None
    if dns_server is not None:
        # A name (localhost, ns.example.org) is resolved here: the DNS client takes addresses only.
        server = dht_config.resolve_addr(dns_server, "--dns-server")
        dns_server = f"[{server[0]}]:{server[1]}" if ":" in server[0] else f"{server[0]}:{server[1]}"
    if dns_only and not dns_name:
        dns_name = dht_config.txt_name(home)
        if not dns_name:
            raise UsageError("--dns-only needs --dns-name NAME or [dns] txt_name in config/dht.toml")
    mode = "dht" if dht_only else "dns" if dns_only else "any"
    options: dict[str, Any] = {"mode": mode, "hint_only": hint_only, "cache_fallback": cache_fallback,
                               "dns_name": dns_name}
    if mode != "dns" and not bootstrap and control.running_node(home) is not None:
        data = asyncio.run(control.call(home, "/local/dht/resolve", {"did": did, **options, "dns_server": dns_server}))
    else:
        result = asyncio.run(service.run_client_resolve(home, did, bootstrap, dns_server=server, **options))
        data = result.as_dict()
    emit(data, as_json, _show_resolve)


@cache_app.command("list")
def cache_list(as_json: bool = JSON) -> None:
    """Presences resolved before, verified again as they are listed."""
    from hn.dht import cache

    entries = cache.listing(STATE.existing_home())
    emit({"entries": entries}, as_json, lambda d: table(
        None, ["did", "ok", "url", "presence seq", "expires", "note"],
        [[e["did"], "yes" if e["ok"] else "NO", e.get("url") or "-", e.get("presence_seq", "-"),
          e.get("expires_at", "-"), "expired" if e.get("expired") else e.get("error", "")] for e in d["entries"]]))
