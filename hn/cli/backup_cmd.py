"""`hn vault backup`: create, verify, decrypt, restore and list encrypted vault backups."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from hn.cli.context import STATE
from hn.cli.output import console, emit, err_console, kv, real, say, table
from hn.errors import HnError, InputError, NetworkError, UsageError
from hn.proto import timefmt

backup_app = typer.Typer(help="Encrypted backups of the vault (backup@1).", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")


def register(app: typer.Typer) -> None:
    from hn.cli import vault_cmd

    # Once per process, however many command trees are built.
    if all(group.typer_instance is not backup_app for group in vault_cmd.app.registered_groups):
        vault_cmd.app.add_typer(backup_app, name="backup")


@contextlib.contextmanager
def _bar(label: str, quiet: bool) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(advance, set_total) callbacks; a Rich bar on stderr unless --json, or stderr is no
    terminal (a log file or a pipe would only get an empty line from it)."""
    if quiet:
        yield (lambda n: None), (lambda n: None)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    shown = real(err_console)
    with Progress(*columns, console=shown, transient=True, disable=not shown.is_terminal) as progress:
        task = progress.add_task(label, total=None)
        yield (lambda n: progress.advance(task, n)), (lambda n: progress.update(task, total=n))


def _recipient(home: Any, me: Any, did: Optional[str]) -> Any:
    from hn.backup.create import Recipient
    from hn.vault import identities

    if did is None or did == me.did:
        return Recipient(me.did, me.keys.key_seq, me.keys.hpke_public())
    history = identities.require_history(home, did)
    return Recipient(did, history.current.seq, history.current.hpke_public_key)


@backup_app.command("create")
def create_cmd(
    scope: str = typer.Option("full", "--scope", help="full | delta"),
    base: Optional[str] = typer.Option(None, "--base", help="Base backup id of a delta (default: the latest, or "
                                       "with --push-url the latest that reached that node)."),
    out: Optional[str] = typer.Option(None, "--out", help="Folder for the header and payload (default $HN_HOME/backups)."),
    push_url: Optional[str] = typer.Option(None, "--push-url", help="Upload to this friend's node."),
    target: Optional[str] = typer.Option(None, "--target", help="DID of the node meant to hold it."),
    recipient: Optional[str] = typer.Option(None, "--recipient", help="Seal to this identity (default: yourself)."),
    include_cache: bool = typer.Option(False, "--include-cache", help="Also back up cache/."),
    as_json: bool = JSON,
) -> None:
    """Snapshot the vault: a signed header and an encrypted payload (only changes with --scope delta)."""
    import os

    from hn.backup import create as creating
    from hn.backup import local, swap
    from hn.proto.keys import is_did
    from hn.vault import identities

    home = STATE.existing_home()
    swap.recover(home.root)
    me = identities.load(home)
    if scope not in ("full", "delta"):
        raise UsageError("--scope must be full or delta")
    if base is not None and scope != "delta":
        raise UsageError("--base only goes with --scope delta")
    if target is not None and not is_did(target):
        raise UsageError(f"--target must be the DID of the node meant to hold the backup, not {target!r}")
    if out is not None and not out.strip():  # most often an unset variable: `--out "$DIR"`
        raise UsageError("--out is empty: give the folder to write the backup into (--out . for the current one)")
    # Absolute from here on: the registry records where the files are, for any later cwd.
    folder = Path(os.path.abspath(Path(out).expanduser())) if out is not None else local.default_dir(home)
    with contextlib.ExitStack() as stack:
        base_header = None
        if scope == "delta":
            # Pushed deltas build on what that node holds, not on a local backup it never got.
            record = local.latest_pushed(home, push_url) if push_url and base is None else \
                local.find(home, base or "latest")
            # Held until the delta is recorded: a prune meanwhile leaves the base alone.
            base_header = stack.enter_context(local.holding_base(Path(record["header"])))
            if base_header.get("owner") != me.did:
                raise InputError(f"base backup {record['id']} belongs to another identity")
        with _bar("backing up", as_json) as (advance, total):
            # Recorded as soon as both files are written, before the disposable cache is.
            result = creating.create(home, me, folder, recipient=_recipient(home, me, recipient), base=base_header,
                                     target=target, include_cache=include_cache, progress=advance, on_scan=total,
                                     on_written=lambda written: local.record_created(home, written))
    data = result.summary()
    if result.reclaimed_bytes:
        data["reclaimed_bytes"] = result.reclaimed_bytes
    if result.warnings:
        from hn.cli.context import warn

        data["warnings"] = result.warnings
        for text in result.warnings:
            warn(text)
    if push_url:
        data["pushed"] = _push(home, me, result.header, result.payload_path, push_url, as_json)
    emit(data, as_json, lambda d: kv({
        "backup": d["id"], "scope": d["scope"] + (f" (base {d['base_backup']})" if d["base_backup"] else ""),
        "files": f"{d['entries']} ({d['stored']} in this payload, {d['files_read']} read)",
        "size": f"{d['bytes']} bytes -> {d['payload_size']} encrypted", "merkle root": d["merkle_root"],
        "sealed to": f"{d['recipient']} key {d['recipient_key_seq']}", "header": d["header"],
        "payload": d["payload"], "pushed": d["pushed"]["url"] if "pushed" in d else "-",
        **({"reclaimed": f"{d['reclaimed_bytes']} bytes left by interrupted backups"}
           if "reclaimed_bytes" in d else {}),
    }, title="backup created"))


def _push(home: Any, me: Any, header: dict[str, Any], payload: Path, url: str, quiet: bool,
          resume_id: str | None = None) -> dict[str, Any]:
    """Upload one local backup (resuming at the bytes the node holds); record it locally and
    in the signed log once the node has it whole. ``resume_id``: the backup the user asked
    for, named by the error that says how to resume (only where trying again can succeed)."""
    import asyncio

    from hn.backup import client

    url = url.rstrip("/")
    backup_id = header["id"]
    with _bar(f"uploading {backup_id[:12]}", quiet) as (advance, total):
        total(header["payload"]["size"])
        try:
            status = asyncio.run(client.push(me.keys, url, header, payload, advance))
        except NetworkError as exc:  # the node could not be reached, or answered an error
            kept = f"{exc.message.rstrip('.')}. Backup {backup_id} is kept in {payload.parent}"
            # A refusal that stays a refusal (a policy, a backup meant for another node, a
            # quota) gets no hint: sending it again would only be refused again.
            exc.args = (f"{kept}; `hn vault backup push --id {resume_id or backup_id} --url {url}` resumes the upload"
                        if client.can_resume(exc) else kept,)
            raise
    if backup_id in status.get("removed", []):
        raise InputError(f"{url} stored backup {backup_id} and dropped it at once: it keeps only the newest "
                         "backups of each owner, and yours there are newer than this one")
    _record_push(home, me, header, url)
    return {"id": backup_id, "url": url, "target": header["target"], "status": status}


def _record_push(home: Any, me: Any, header: dict[str, Any], url: str) -> None:
    from hn.backup import local

    local.record_pushed(home, header["id"], url, header["target"], timefmt.now_iso())
    # The signed log is the record trust links cite as evidence (backup:ID). It comes
    # after the snapshot, so the next backup, not this one, carries it.
    with home.lock():
        home.append_event(me.keys, "backup.push", {
            "id": header["id"], "target": header["target"], "url": url, "digest": header["payload"]["digest"]})


@backup_app.command("push")
def push_cmd(
    url: str = typer.Option(..., "--url", help="The friend's node to upload to."),
    backup_id: str = typer.Option("latest", "--id", help="Local backup id or unique prefix ('latest': the newest)."),
    as_json: bool = JSON,
) -> None:
    """Upload a local backup to a friend's node, resuming an interrupted upload; bases of a
    delta that the node does not hold yet go first."""
    import asyncio

    from hn.backup import client, local, swap
    from hn.backup.create import payload_path_for
    from hn.vault import identities

    home = STATE.existing_home()
    swap.recover(home.root)
    me = identities.load(home)
    url = url.rstrip("/")
    first = local.find(home, backup_id)["id"]
    held = {str(r.get("id")) for r in asyncio.run(client.listing(url, me.did))}
    chain: list[tuple[dict[str, Any], Path]] = []  # newest first, down to what the node holds
    wanted: str | None = first
    while wanted is not None:
        if any(h["id"] == wanted for h, _ in chain):
            raise InputError(f"the chain of backup {first} loops at {wanted}")
        try:
            record = local.find(home, wanted)
        except HnError as exc:
            if wanted in held:
                break  # the node has it; it need not be here
            raise InputError(f"backup {chain[-1][0]['id']} builds on {wanted}, which is neither on {url} nor "
                             "here: push a chain whose full backup is at hand") from exc
        path = Path(record["header"])
        header = local.read_header_file(path)
        if header["owner"] != me.did:
            raise InputError(f"backup {header['id']} belongs to {header['owner']}, not to {me.did}")
        if wanted in held:
            # Already there; if the answer to its last segment was lost, say so here too.
            if "pushed" in record and not any(p.get("url") == url for p in record["pushed"]):
                _record_push(home, me, header, url)
            break
        chain.append((header, payload_path_for(path)))
        wanted = header["base_backup"]
    pushed = [_push(home, me, header, payload, url, as_json, first) for header, payload in reversed(chain)]
    data = {"id": first, "url": url, "pushed": pushed, "already_there": not chain}
    emit(data, as_json, lambda d: console.print(
        f"{d['url']} already holds backup {d['id']}" if d["already_there"] else
        "\n".join(f"pushed {p['id']} to {d['url']}" for p in d["pushed"])))


@backup_app.command("verify")
def verify_cmd(
    path: Path = typer.Option(..., "--path", help="Header file <id>.backup.json (payload beside it)."),
    deep: bool = typer.Option(False, "--deep", help="Also decrypt and recompute every file digest."),
    owner: Optional[str] = typer.Option(None, "--owner", help="Accept a backup signed by this DID."),
    as_json: bool = JSON,
) -> None:
    """Check signature, manifest, Merkle root and payload digest (and with --deep every file).

    A backup that fails a check is a result, as with `hn vault verify`: with --json the
    report ("ok": false, the failed check) is on stdout, the error line on stderr, and the
    exit code is not 0. A header that cannot be read at all is an error only.
    """
    from hn.backup import local, restore
    from hn.errors import TooLarge, VerificationError

    home = STATE.existing_home()
    header = local.read_header_file(path)
    source = restore.FileSource(path.parent, header, path)
    check = "quick"
    try:
        # With --deep the payload is hashed while it is decrypted (the same file), not read twice.
        data = restore.verify_quick(header, source.payload_path(header), home, owner, digest=not deep)
        data["id"] = header["id"]
        data["scope"] = header["scope"]
        if deep:
            check = "deep"
            with _bar("verifying", as_json) as (advance, total):
                # verify_quick has checked this header's signature and shape just above.
                outcome = restore.restore(source, header["id"], home, None,
                                          expected_owner=owner, progress=advance, on_total=total, top_checked=True)
            data["deep"] = {"files": outcome.files, "bytes": outcome.bytes, "chain": outcome.chain}
    except (VerificationError, TooLarge) as exc:  # TooLarge: a payload decompressing past its size
        if as_json:
            failed = {"check": check, "ok": False, "code": exc.code, "detail": exc.message}
            emit({"id": header.get("id"), "scope": header.get("scope"), "ok": False, "failed": [failed]}, True)
        raise
    data["ok"] = True
    emit(data, as_json, lambda d: console.print(
        f"[green]ok[/green] backup {d['id']}: signature, manifest ({d['entries']} entries), Merkle root, payload digest"
        + (f"; decrypted and checked {d['deep']['files']} files" if "deep" in d else "")))


@backup_app.command("decrypt")
def decrypt_cmd(
    path: Path = typer.Option(..., "--path", help="Header file <id>.backup.json."),
    out: str = typer.Option(..., "--out", metavar="FILE", help="Where to write the plain .tar.zst (a new file)."),
    owner: Optional[str] = typer.Option(None, "--owner", help="Accept a backup signed by this DID."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    as_json: bool = JSON,
) -> None:
    """Write the decrypted payload as a standard .tar.zst (`zstd -d < F | tar -x` extracts it)."""
    import shlex

    from hn.backup import create as creating
    from hn.backup import local, payload, restore
    from hn.cli import output
    from hn.vault import atomic

    target = output.out_file(out, force=force)
    home = STATE.existing_home()
    header = local.read_header_file(path)
    restore.check_owner(home, header, owner)
    key = payload.recipient_key(home, header)
    source = creating.payload_path_for(path)
    payload.require_payload(source)
    with open(source, "rb") as src, atomic.atomic_writer(target, mode=0o600) as dst:
        with payload.open_compressed(header, key, src) as plain:
            while block := plain.read(1 << 20):
                dst.write(block)
    data = {"id": header["id"], "out": str(target), "compressed_size": header["payload"]["compressed_size"],
            "scope": header["scope"], "base_backup": header["base_backup"]}
    # The command is one whole line, to be copied as it is (the path quoted for a shell).
    emit(data, as_json, lambda d: output.plain(
        f"wrote {d['out']} ({d['compressed_size']} bytes); extract with: zstd -d < {shlex.quote(d['out'])} | tar -x"))


@backup_app.command("restore")
def restore_cmd(
    into: Path = typer.Option(..., "--into", help="Vault folder to create or replace."),
    path: Optional[Path] = typer.Option(None, "--path", help="Header file <id>.backup.json."),
    from_url: Optional[str] = typer.Option(None, "--from", help="Friend's node holding the backup."),
    backup_id: Optional[str] = typer.Option(None, "--id", help="Backup id on that node ('latest' for the newest)."),
    verify_only: bool = typer.Option(False, "--verify-only", help="Decrypt and check everything, change nothing."),
    owner: Optional[str] = typer.Option(None, "--owner", help="Accept a backup signed by this DID."),
    force: bool = typer.Option(False, "--force", help="Replace a folder that holds another identity's vault."),
    as_json: bool = JSON,
) -> None:
    """Restore a backup (with its delta chain): staged, verified, then swapped in under a journal."""
    from hn.backup import local, restore, swap
    from hn.proto.backup import is_backup_id
    from hn.vault import identities

    if (path is None) == (from_url is None):
        raise UsageError("give either --path FILE or --from URL --id ID")
    home = STATE.existing_home()
    into = into.expanduser().absolute()
    source: Any
    with contextlib.ExitStack() as stack:
        # The download beside the target is this restore's alone, as is the target.
        stack.enter_context(swap.guard(into))
        with _bar("restoring", as_json) as (advance, total):
            if path is not None:
                header = local.read_header_file(path)
                source = restore.FileSource(path.parent, header, path)
                wanted = str(header["id"])
            else:
                if not backup_id:
                    raise UsageError("--from needs --id ID (or --id latest)")
                if backup_id != "latest" and not is_backup_id(backup_id):
                    raise UsageError(f"--id must be a backup id (32 lowercase hex characters) or 'latest', not {backup_id!r}")
                import asyncio
                import shutil

                from hn.backup import client

                scratch = swap.download_folder(into)
                stack.callback(shutil.rmtree, scratch, True)
                source = client.RemoteSource(from_url or "", scratch, advance)
                wanted = backup_id
                if backup_id == "latest":
                    me = owner or identities.load(home).did
                    items = asyncio.run(client.listing(from_url or "", me))
                    if not items:
                        raise InputError(f"{from_url} holds no backup of {me}")
                    wanted = str(items[-1]["id"])
            outcome = restore.restore(source, wanted, home, None if verify_only else into,
                                      expected_owner=owner, force=force, progress=advance, on_total=total)
    data = outcome.as_dict()
    data["verify_only"] = verify_only
    emit(data, as_json, lambda d: console.print(
        f"[green]ok[/green] backup {d['id']} ({len(d['chain'])} in chain): {d['files']} files, {d['bytes']} bytes "
        + ("verified, nothing changed" if verify_only else f"restored into {d['restored_into']}")
        + f"; Merkle root {d['merkle_root']}"
        + (f"; kept from the vault it replaced: {', '.join(d['kept'])}" if d["kept"] else "")))


@backup_app.command("list")
def list_cmd(
    from_url: Optional[str] = typer.Option(None, "--from", help="Also list what this node holds for you."),
    as_json: bool = JSON,
) -> None:
    """Local and pushed backups, with their chain (base) links."""
    from hn.backup import local
    from hn.vault import identities

    home = STATE.existing_home()
    items = local.records(home)
    rows = []
    for item in items:
        rows.append({**item, "chain": local.chain(items, item["id"]),
                     "local": Path(str(item.get("header", ""))).exists()})
    data: dict[str, Any] = {"backups": rows}
    if from_url:
        import asyncio

        from hn.backup import client

        data["remote"] = {"url": from_url.rstrip("/"),
                          "backups": asyncio.run(client.listing(from_url, identities.load(home).did))}
    emit(data, as_json, lambda d: table(None, ["id", "scope", "base", "created", "files", "payload", "local", "pushed to"], [
        [r["id"], r["scope"], r.get("base_backup") or "-", r["created_at"], r["entries"], r["payload_size"],
         "yes" if r["local"] else "missing", ", ".join(p["url"] for p in r.get("pushed", [])) or "-"]
        for r in d["backups"]] + [[r["id"], r.get("scope"), r.get("base_backup") or "-", r.get("created_at"),
                                   r.get("entries"), r.get("payload_size"), "remote", d["remote"]["url"]]
                                  for r in d.get("remote", {}).get("backups", [])]))


@backup_app.command("prune")
def prune_cmd(
    keep: int = typer.Option(..., "--keep", help="How many of the newest local backups to keep (at least 1)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    as_json: bool = JSON,
) -> None:
    """Remove local backups but the newest N, the bases they need, and the latest pushed to each node."""
    from hn.backup import local

    if keep < 1:
        raise UsageError("--keep must be at least 1: the newest backup is always kept")
    home = STATE.existing_home()
    data = local.prune(home, keep, dry_run=dry_run)
    emit(data, as_json, _show_pruned)
    if data["failed"]:
        raise typer.Exit(1)


def _show_pruned(d: dict[str, Any]) -> None:
    if d["removed"]:
        table("would be removed" if d["dry_run"] else "removed", ["id", "scope", "created", "freed bytes", "record"],
              [[r["id"], r["scope"], r["created_at"], r["freed_bytes"],
                "kept (it was pushed)" if r["record_kept"] else "removed"] for r in d["removed"]])
    else:
        say("nothing to remove")
    say("{} kept, {} bytes {}freed", len(d["kept"]), d["freed_bytes"], "would be " if d["dry_run"] else "")
    for held in d["in_use"]:
        say("kept {}: it is the base of a delta being made right now", held)
    for failed in d["failed"]:
        say("could not remove {}: {}", failed["id"], failed["error"], style="red")
