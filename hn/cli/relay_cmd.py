"""`hn mcp relay`: keep my presence reachable through friends' nodes."""

from __future__ import annotations

import asyncio
from typing import Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, failed_line, table
from hn.errors import HnError, UsageError, VerificationError
from hn.proto import timefmt
from hn.vault import identities

app = typer.Typer(help="Relays: friends' nodes that keep your presence and index reachable.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")


async def _pin(did: str, url: str) -> None:
    """Pin the relay's identity@1 from its node if we do not know it yet."""
    from hn.federation import service

    home = STATE.home
    if identities.known_history(home, did) is not None:
        return
    await service.pin_identity(home, identities.load(home), did, url, timeout=20)


@app.command("register")
def register(relay_did: str = typer.Argument(..., help="The relay node's DID."),
             url: str = typer.Option(..., "--url", help="The relay node's URL."),
             days: int = typer.Option(30, "--days", help="How long the relay entry stays in your presence."),
             as_json: bool = JSON) -> None:
    """Add a relay@1 entry to my presence@2 (re-signed with seq+1)."""
    from hn.relay import roster

    if not 1 <= days <= roster.MAX_LIFETIME // 86400:
        raise UsageError(f"--days must be from 1 to {roster.MAX_LIFETIME // 86400}, not {days}")
    home = STATE.home
    me = identities.load(home)
    url = roster.checked(me, relay_did, url, days * 86400, "--url")  # before anything is fetched from it
    asyncio.run(_pin(relay_did, url))
    if identities.known_history(home, relay_did) is None:
        raise VerificationError(f"could not pin the identity of {relay_did}")
    entry, doc = roster.register(home, me, relay_did, url, days * 86400)
    emit({"relay": entry, "presence_seq": doc["seq"]}, as_json,
         lambda d: console.print(f"relay {relay_did} registered; presence re-signed at seq {doc['seq']}"))


@app.command("unregister")
def unregister(relay_did: str, as_json: bool = JSON) -> None:
    """Remove a relay from my presence@2."""
    from hn.relay import roster

    home = STATE.home
    doc = roster.unregister(home, identities.load(home), relay_did)
    emit({"removed": relay_did, "presence_seq": doc["seq"]}, as_json,
         lambda d: console.print(f"relay {relay_did} removed"))


@app.command("push")
def push(to: Optional[str] = typer.Option(None, "--to", help="Only this relay DID."), as_json: bool = JSON) -> None:
    """Signed push of my presence, identity and index slices to my relays."""
    from hn.relay import push as pusher

    home = STATE.home
    me = identities.load(home)
    results = asyncio.run(pusher.push(home, me, to))
    data = {"pushed": results, "ok": all(r["ok"] for r in results)}
    emit(data, as_json, lambda d: table(None, ["relay", "url", "result"], [
        [r["relay"], r["url"], f"ok, expires {r.get('expires_at')}" if r["ok"] else f"FAILED: {r['error']}"]
        for r in d["pushed"]]))
    if not data["ok"]:
        raise HnError(failed_line("relay", "refused or could not be reached", "relay", results))


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """My relays, and the peers this node relays for (with expiry)."""
    from hn.relay import roster
    from hn.relay.store import RelayStore

    home = STATE.existing_home()
    now = timefmt.now()
    mine = [{**r, "live": roster.expires(r) > now} for r in roster.my_relays(home)]
    relayed = []
    for record in RelayStore(home).live(now):
        info = record.summary()
        info["expires_at"] = timefmt.fmt(record.expires_at)
        info["stored_at"] = timefmt.fmt(record.stored_at)
        relayed.append(info)

    def human(d: dict) -> None:  # type: ignore[type-arg]
        table("my relays", ["did", "url", "expires"], [[r["did"], r["url"], r["expires_at"]] for r in d["relays"]])
        table("relayed here", ["did", "seq", "expires", "slices", "bytes"],
              [[r["did"], r["seq"], r["expires_at"], r["slices"], r["bytes"]] for r in d["relayed"]])

    emit({"relays": mine, "relayed": relayed}, as_json, human)
