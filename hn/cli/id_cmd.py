"""`hn id`: identities, contacts and recovery."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, err_console, kv, out_file, plain, say, table
from hn.errors import InputError, MalformedDocument, TooLarge
from hn.proto.canonical import DEFAULT_MAX_BYTES, canonical, loads_strict
from hn.proto.identity import verify_identity
from hn.vault import identities, presence, recovery
from hn.vault.identities import Identity

app = typer.Typer(help="Identities: create, list, rotate, export, import, recover.", no_args_is_help=True)
recovery_app = typer.Typer(help="SLIP-39 recovery shares of an identity secret.", no_args_is_help=True)
app.add_typer(recovery_app, name="recovery")

JSON = typer.Option(False, "--json", help="Print one JSON document.")


def _show(ident: Identity, active: bool | None = None) -> dict[str, Any]:
    info = ident.public_info()
    if active is not None:
        info["active"] = active
    return info


@app.command("create")
def create(alias: str = typer.Argument(..., help="Local name for the identity."), as_json: bool = JSON) -> None:
    """Create an identity (Ed25519 signing key + X25519 HPKE key); the first becomes active."""
    home = STATE.home
    ident = identities.create(home, alias)
    if identities.active_alias(home) == ident.alias:
        presence.refresh(home, ident)
    emit(_show(ident, identities.active_alias(home) == ident.alias), as_json,
         lambda d: say("created {} {}" + (" (active)" if d["active"] else ""), d["alias"], d["did"]))


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """List the identities in this vault."""
    home = STATE.home
    active = identities.active_alias(home)
    rows = [_show(identities.load(home, a), a == active) for a in identities.own_aliases(home)]
    emit({"identities": rows}, as_json, lambda d: table(
        None, ["", "alias", "did", "key_seq"],
        [["*" if r["active"] else "", r["alias"], r["did"], r["key_seq"]] for r in d["identities"]]))


@app.command("use")
def use(alias: str, as_json: bool = JSON) -> None:
    """Make ALIAS the active identity."""
    home = STATE.home
    ident = identities.use(home, alias)
    presence.refresh(home, ident)
    emit(_show(ident, True), as_json, lambda d: say("active identity: {} {}", d["alias"], d["did"]))


@app.command("show")
def show(alias: Optional[str] = typer.Argument(None), as_json: bool = JSON) -> None:
    """Show an identity (the active one by default)."""
    home = STATE.home
    ident = identities.load(home, alias)
    emit(_show(ident, identities.active_alias(home) == ident.alias), as_json, lambda d: kv(d))


@app.command("rotate")
def rotate(as_json: bool = JSON) -> None:
    """Rotate to new keys; the new key entry is signed by the previous key."""
    home = STATE.home
    ident = identities.rotate(home)
    presence.refresh(home, ident)
    emit(_show(ident), as_json, lambda d: say("rotated {} to key {}", d["alias"], d["key_seq"]))


@app.command("export")
def export(out: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                           help="File to write, replaced if it exists (default: stdout)."),
           alias: Optional[str] = typer.Option(None, "--alias"),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON document: the identity@1 itself, "
                                        "or with --out what was written.")) -> None:
    """Export the public identity@1 (key history and current HPKE key)."""
    from hn.vault import atomic

    target = out_file(out) if out is not None else None
    ident = identities.load(STATE.home, alias)
    raw = canonical(ident.doc)
    if target is None:
        sys.stdout.write(raw.decode("utf-8") + "\n")
        return
    atomic.write_bytes(target, raw)
    if as_json:
        emit({"out": str(target), "alias": ident.alias, "did": ident.did, "keys": len(ident.history.keys),
              "identity_digest": ident.public_info()["identity_digest"]}, True)
    elif sys.stdout.isatty():
        plain(f"wrote {target}", style="dim")


# What `hn id import` takes (the cap of identities.import_contact) and what `hn id recovery
# restore` reads on standard input (16 shares of 33 words are about 5 KB): read no further,
# so that /dev/zero or a wrong, huge file is an error, not all of this machine's memory.
IDENTITY_MAX_BYTES = 1 << 20
SHARES_MAX_BYTES = 1 << 20


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > limit:
        raise TooLarge(f"{path} is larger than {limit} bytes: it is not {what}")
    return raw


@app.command("import")
def import_(file: Path = typer.Argument(..., help="An identity@1 JSON file."), as_json: bool = JSON) -> None:
    """Add (or update) a contact from their identity@1 (not one of this vault's own identities)."""
    raw = _read_bounded(file, IDENTITY_MAX_BYTES, "an identity@1 document")
    history = identities.import_contact(STATE.home, raw, refuse_own=True)
    emit({"did": history.did, "keys": len(history.keys)}, as_json,
         lambda d: console.print(f"contact {d['did']} ({d['keys']} keys) pinned"))


@recovery_app.command("split")
def split(threshold: int = typer.Option(3, "--threshold", "-k"), shares: int = typer.Option(5, "--shares", "-n"),
          passphrase: str = typer.Option("", "--passphrase", help="Optional SLIP-39 passphrase."),
          as_json: bool = JSON) -> None:
    """Split the active identity's secret into SLIP-39 mnemonics (K of N restore it)."""
    home = STATE.home
    ident = identities.load(home)
    words = recovery.split(home, ident, threshold, shares, passphrase)

    def human(d: dict[str, Any]) -> None:
        # Standard output holds the shares alone, one whole line each (`restore` reads
        # them back as they are); the advice goes to standard error.
        for i, w in enumerate(d["shares"]):
            plain(f"share {i + 1} of {len(words)}: {w}")
        err_console.print(f"Any {threshold} of these rebuild every key of {ident.did}. Keep them apart.")

    emit({"did": ident.did, "threshold": threshold, "shares": words}, as_json, human)


# The label `split` puts before each mnemonic; `restore` takes lines with or without it.
SHARE_LABEL = re.compile(r"^\s*share\s+\d+\s+of\s+\d+\s*:", re.IGNORECASE)


def _load_identity_doc(source: str) -> dict[str, Any]:
    if source.startswith("http://") or source.startswith("https://"):
        from hn.netclient import fetch_json_sync

        doc = fetch_json_sync(source)
    else:
        doc = loads_strict(_read_bounded(Path(source), DEFAULT_MAX_BYTES, "an identity@1 document"))
    if not isinstance(doc, dict):
        raise MalformedDocument("identity@1 must be a JSON object")
    # A backup header or a presence bundle may carry the identity under "identity".
    if doc.get("type") != "identity@1" and isinstance(doc.get("identity"), dict):
        doc = doc["identity"]
    verify_identity(doc)
    return doc


@recovery_app.command("restore")
def restore(alias: Optional[str] = typer.Option(None, "--alias", help="Local name (default: the identity's)."),
            identity: Optional[str] = typer.Option(None, "--identity", help="identity@1 file or URL with the key history."),
            passphrase: str = typer.Option("", "--passphrase"),
            as_json: bool = JSON) -> None:
    """Rebuild an identity from K mnemonics read from standard input, one per line (as
    `split` prints them, with or without their "share N of M:" label)."""
    home = STATE.home
    raw = sys.stdin.buffer.read(SHARES_MAX_BYTES + 1)
    if len(raw) > SHARES_MAX_BYTES:
        raise TooLarge(f"standard input holds more than {SHARES_MAX_BYTES} bytes: give the shares, one per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"standard input is not UTF-8 text (byte {exc.start}): give the shares, one per line") from None
    lines = [SHARE_LABEL.sub("", line) for line in text.splitlines() if line.strip()]
    doc = _load_identity_doc(identity) if identity else None
    name = alias or (doc.get("alias") if doc else None) or "restored"
    ident = recovery.restore(home, lines, name, doc, passphrase)
    presence.refresh(home, ident)
    out = _show(ident, identities.active_alias(home) == ident.alias)
    out["history_complete"] = doc is not None
    emit(out, as_json, lambda d: say(
        "restored {} {} at key {}"
        + ("" if d["history_complete"] else " (no key history given: pass --identity FILE|URL to restore later keys)"),
        d["alias"], d["did"], d["key_seq"]))


def dump(data: Any) -> str:
    return json.dumps(data, indent=2)
