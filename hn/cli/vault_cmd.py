"""`hn vault`: status and verification (backups live in `hn vault backup`)."""

from __future__ import annotations

from typing import Any

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, kv
from hn.errors import NoIdentity, VaultCorrupt

app = typer.Typer(help="The vault: status, verification, backups.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")


@app.command("status")
def status(as_json: bool = JSON) -> None:
    """Identity, counts, index root and the last event."""
    # Imported here: `hn vault backup ...` loads this module too, and needs none of them.
    from hn.vault import identities, presence, store

    home = STATE.existing_home()
    try:
        me = identities.load(home)
        doc, _ = presence.refresh(home, me)
    except NoIdentity:
        me, doc = None, None
    catalog = store.load_catalog(home)
    entries = catalog.index_entries()
    last = None
    files = home.event_files()
    if files:
        event = home.read_event(files[-1])
        last = {"seq": event.get("seq"), "kind": event.get("kind"), "issued_at": event.get("issued_at")}
    kinds: dict[str, int] = {}
    for entry in catalog.entries.values():
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    data: dict[str, Any] = {
        "home": str(home.root),
        "identity": me.public_info() if me else None,
        "counts": {"documents": kinds.get("doc", 0), "shards": kinds.get("shard", 0),
                   "published": len(entries), "events": catalog.head_seq,
                   "contacts": len(identities.contact_dids(home))},
        "index": {"root": store.index_root(entries), "size": len(entries), "cursor": catalog.index_cursor()},
        "presence_seq": doc["seq"] if doc else None,
        "last_event": last,
    }
    emit(data, as_json, lambda d: kv({
        "home": d["home"],
        "identity": f"{d['identity']['alias']} {d['identity']['did']}" if d["identity"] else "(none)",
        "documents": d["counts"]["documents"], "shards": d["counts"]["shards"],
        "published": d["counts"]["published"], "events": d["counts"]["events"],
        "index root": d["index"]["root"], "presence seq": d["presence_seq"],
        "last event": f"{last['seq']} {last['kind']} {last['issued_at']}" if last else "-",
    }))


@app.command("verify")
def verify(as_json: bool = JSON) -> None:
    """Recompute the event hash chain, every artefact digest and the index root."""
    from hn.vault.verify import verify_vault

    home = STATE.existing_home()
    report = verify_vault(home)

    def human(d: dict[str, Any]) -> None:
        from rich.markup import escape

        for c in d["checks"]:
            console.print(("[green]ok[/green]  " if c["ok"] else "[red]FAIL[/red] ") + escape(f"{c['check']}: {c['detail']}"))
        for note in d["notes"]:
            console.print("[yellow]note[/yellow] " + escape(note))

    emit(report.as_dict(), as_json, human)
    if not report.ok:
        raise VaultCorrupt("vault verification failed: " + "; ".join(c["detail"] for c in report.as_dict()["failed"]))
