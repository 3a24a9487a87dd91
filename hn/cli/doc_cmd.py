"""`hn doc`: add, list, publish, share and open documents."""

from __future__ import annotations

import os
import stat
import string
from pathlib import Path
from typing import Any

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, err_console, out_file, real, say, table
from hn.errors import InputError, UsageError
from hn.vault import identities, presence, shards, store

app = typer.Typer(help="Documents: content-addressed artefacts, shares and shards.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")


def doc_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": entry["id"],
        "digest": entry["digest"],
        "size": entry["size"],
        "type": entry.get("media_type") or entry["kind"],
        "kind": entry["kind"],
        "name": entry.get("name", ""),
        "published": bool(entry.get("published")),
        **({"recipient": entry["recipient"]} if "recipient" in entry else {}),
        **({"sender": entry["sender"]} if "sender" in entry else {}),
    }


@app.command("add")
def add(files: list[Path] = typer.Argument(..., help="Files or folders (added recursively). A symbolic link named "
                                           "here is followed, as cp does; inside folders, symbolic links, FIFOs "
                                           "and devices are skipped and listed."),
        publish: bool = typer.Option(False, "--publish", help="List them in the public index."),
        as_json: bool = JSON) -> None:
    """Add files to the vault under their BLAKE3 content address.

    A document is its content: a file whose bytes are in the vault already is not added
    again and the document keeps its name (the output says so).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    home = STATE.home
    me = identities.load(home)
    inputs = store.expand_inputs(files)
    skipped = [{"path": str(k.path), "reason": k.reason} for k in inputs.skipped]
    if not inputs.files:
        raise InputError("no files to add" + (f": {_skipped_text(skipped)}" if skipped else ""))
    todo = inputs.files
    show = not as_json and len(todo) > 20
    with Progress(TextColumn("adding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=real(err_console), disable=not show, transient=True) as bar:
        task = bar.add_task("add", total=len(todo))
        added = store.add(home, me.keys, todo, publish, progress=lambda n: bar.advance(task, n))
    doc, changed = presence.refresh(home, me)
    views: dict[str, dict[str, Any]] = {}
    for a in added:
        views.setdefault(a.entry["id"], {**doc_view(a.entry), "new": a.new})
    per_file = [{"file": str(a.path), "id": a.entry["id"], "name": a.entry.get("name", ""),
                 "outcome": "new" if a.new else "same_as_file" if a.same_as else "already_in_vault",
                 **({"same_as": str(a.same_as)} if a.same_as else {})} for a in added]
    data = {"added": list(views.values()), "files": per_file, "skipped": skipped, "presence_seq": doc["seq"],
            "index_root": doc["index"]["root"]}

    def human(d: dict[str, Any]) -> None:
        from rich.markup import escape

        new = sum(1 for v in d["added"] if v["new"])
        console.print(f"added {new} document(s)" + (", published" if publish else "")
                      + (f"; index root {doc['index']['root'][:16]}…" if changed else ""))
        for f in d["files"]:
            if f["outcome"] == "already_in_vault" and Path(f["file"]).name == f["name"]:
                console.print(escape(f"{f['file']}: already in the vault"))
            elif f["outcome"] == "already_in_vault":
                console.print(escape(f"{f['file']}: same content as {f['name']} (already in the vault); "
                                     f"it keeps the name {f['name']}"))
            elif f["outcome"] == "same_as_file":
                console.print(escape(f"{f['file']}: same content as {f['same_as']}; added once, as {f['name']}"))
        if d["skipped"]:
            console.print(escape(_skipped_text(d["skipped"])))

    emit(data, as_json, human)


def _skipped_text(skipped: list[dict[str, str]]) -> str:
    return (f"skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that "
            f"{'is' if len(skipped) == 1 else 'are'} not a regular file: "
            + ", ".join(f"{k['path']} ({k['reason']})" for k in skipped))


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """List documents and shards."""
    catalog = store.load_catalog(STATE.existing_home())
    views = sorted((doc_view(e) for e in catalog.entries.values()), key=lambda v: (v["kind"], v["name"], v["id"]))
    emit({"artefacts": views}, as_json, lambda d: table(
        None, ["id", "kind", "name", "size", "type", "published"],
        [[v["id"][:16], v["kind"], v["name"], v["size"], v["type"], "yes" if v["published"] else ""] for v in views]))


def _set_published(ids: list[str], value: bool, as_json: bool) -> None:
    home = STATE.home
    me = identities.load(home)
    entries, changed = store.set_published(home, me.keys, ids, value)
    doc, _ = presence.refresh(home, me)
    done = "published" if value else "unpublished"
    unchanged = len(entries) - len(changed)
    emit({"artefacts": [doc_view(e) for e in entries], "changed": changed, "index_root": doc["index"]["root"]},
         as_json, lambda d: console.print(f"{done} {len(changed)} document(s)"
                                          + (f"; {unchanged} {'was' if unchanged == 1 else 'were'} {done} already"
                                             if unchanged else "")))


@app.command("publish")
def publish_(ids: list[str] = typer.Argument(...), as_json: bool = JSON) -> None:
    """List documents in the public index."""
    _set_published(ids, True, as_json)


@app.command("unpublish")
def unpublish(ids: list[str] = typer.Argument(...), as_json: bool = JSON) -> None:
    """Remove documents from the public index (peers see a tombstone)."""
    _set_published(ids, False, as_json)


@app.command("share")
def share(doc_id: str = typer.Argument(..., help="Document id or unique prefix."),
          to: str = typer.Option(..., "--to", help="Recipient DID (a contact: `hn id import`)."),
          as_json: bool = JSON) -> None:
    """Seal a document with HPKE for one recipient; the shard is published in the index."""
    home = STATE.home
    me = identities.load(home)
    data = shards.share(home, me, doc_id, to)
    presence.refresh(home, me)
    emit(data, as_json, lambda d: console.print(f"shard {d['id']} for {d['recipient']}"))


@app.command("open")
def open_(shard_id: str = typer.Argument(..., help="Shard id (or prefix), or a path to a shard file."),
          out: str = typer.Option(..., "--out", metavar="FILE", help="Where to write the document (a new file)."),
          force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
          as_json: bool = JSON) -> None:
    """Decrypt a shard addressed to you."""
    target = out_file(out, force=force)
    home = STATE.home
    me = identities.load(home)
    source = _shard_source(home, shard_id)
    data = shards.open_shard(home, me, source, target)
    # The name is the sender's text: shown safe, never read as markup.
    emit(data, as_json, lambda d: say("opened {} from {} -> {}", d["name"] or d["id"], d["sender"], d["out"]))


def _shard_source(home: Any, shard_id: str) -> Path:
    """The shard file SHARD_ID names: a path to one, or a shard id (hex) or a prefix of it."""
    if not shard_id.strip():
        raise UsageError("SHARD_ID is empty: give a shard id, or the path of a shard file")
    try:
        mode: int | None = os.stat(shard_id).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISREG(mode):
        return Path(shard_id)
    if all(c in string.hexdigits for c in shard_id.strip()):
        return shards.find_shard(home, shard_id)
    if mode is not None:
        raise InputError(f"{shard_id}: not a shard file ({store.file_kind(mode)})")
    raise InputError(f"{shard_id}: no such file (nor a shard id, which is hexadecimal)")
