"""`hn vault verify`: recompute everything the vault claims and report what fails.

Every failure names the file it is about, relative to the vault.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hn.errors import DiskError, HnError, storage_failure
from hn.proto.canonical import canonical, doc_digest, loads_canonical, loads_strict
from hn.proto.events import GENESIS_PREV, verify_event
from hn.proto.identity import KeyHistory, verify_identity
from hn.proto.presence import verify_presence
from hn.proto.signed import verify_document
from hn.vault import identities, policy
from hn.vault.home import Home
from hn.vault.store import (
    CATALOG,
    Catalog,
    hash_file,
    index_root,
    leftover_temps,
    object_path,
    read_cached_catalog,
    replay,
    shard_path,
)

SIGNED_FOLDERS = ("trust", "receipts", "contracts", "sync")
# Caches under those folders that hold no signed document and that hn rebuilds when they
# are missing or unreadable (docs/backups.md): an unreadable one is a note, not damage.
DISPOSABLE = {
    "sync/backup-cache.json": "the next backup reads every file and writes it again",
    "sync/backups.json": "`hn vault backup list` shows no local backup until the next backup writes it again",
}


def relative(root: Path, path: Path | str) -> str:
    """``path`` as the user finds it in the vault (relative to it when inside it)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def os_problem(exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return "a file stands where a folder should be"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def naming(root: Path, path: Path | None = None) -> Iterator[None]:
    """A failure met inside becomes an HnError that names its file: ``path`` when given,
    else the file a failed system call names. This machine's storage failing is raised
    as a DiskError: it is no failure of the vault's."""
    where = relative(root, path) if path is not None else None
    try:
        yield
    except DiskError:
        raise
    except HnError as exc:
        if where is None or where in exc.message:
            raise
        raise HnError(f"{where}: {exc.message}") from exc
    except OSError as exc:
        if (failure := storage_failure(exc)) is not None:
            raise failure from exc
        named = relative(root, exc.filename) if exc.filename else where or "a file of the vault"
        raise HnError(f"{named}: {os_problem(exc)}") from exc
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # A document of a shape no check expected.
        raise HnError(f"{where + ': ' if where else ''}malformed ({type(exc).__name__}: {exc})") from exc


class Report:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.checks: list[dict[str, Any]] = []
        self.notes: list[str] = []  # worth knowing, not damage: they do not fail the vault

    def check(self, name: str, fn: Callable[[], str]) -> None:
        try:
            with naming(self.root):
                detail = fn()
        except DiskError:
            raise  # the disk failing is not the vault failing a check: nothing is known yet
        except HnError as exc:
            self.checks.append({"check": name, "ok": False, "detail": exc.message})
        else:
            self.checks.append({"check": name, "ok": True, "detail": detail})

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": self.checks, "failed": [c for c in self.checks if not c["ok"]],
                "notes": self.notes}


def verify_vault(home: Home) -> Report:
    report = Report(home.root)
    histories: dict[str, KeyHistory] = {}

    def rel(path: Path) -> str:
        return relative(home.root, path)

    def about(path: Path) -> contextlib.AbstractContextManager[None]:
        """A failure while checking ``path`` names it."""
        return naming(home.root, path)

    def config() -> str:
        folder = home.path("config")
        files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        for path in files:
            with about(path):
                try:
                    data = tomllib.loads(path.read_bytes().decode("utf-8"))
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                    raise HnError(f"is not valid TOML ({exc}); every hn command that reads it refuses "
                                  "to work until it is fixed") from exc
                if path.name == "vault.toml":
                    active = data.get("active")
                    if active is not None and (not isinstance(active, str) or active not in identities.own_aliases(home)):
                        raise HnError(f"the active identity {active!r} is not in this vault (`hn id use ALIAS`)")
                elif path.name == policy.FILE:
                    policy_problems(data)
        return f"{len(files)} config files parse" + (f" ({', '.join(p.name for p in files)})" if files else "")

    def policy_problems(data: dict[str, Any]) -> None:
        for name, entry in data.items():
            if name not in policy.KNOWN:
                continue  # never read: `hn policy show` lists the known ones
            targets = entry.get("targets", {}) if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not isinstance(targets, dict):
                raise HnError(f"policy {name} is not a table of a default and targets")
            values: list[tuple[str | None, Any]] = [(None, entry["default"])] if "default" in entry else []
            for target, value in values + list(targets.items()):
                where = f"policy {name}" + (f" for {target}" if target else "")
                if not isinstance(value, str):
                    raise HnError(f"{where} is not a string")
                if name not in policy.SELECTABLE:  # selectors are the trust capability's to check
                    try:
                        policy.check_value(name, value)
                    except HnError as exc:
                        raise HnError(f"{where}: {exc.message}") from exc

    def own() -> str:
        aliases = identities.own_aliases(home)
        for alias in aliases:
            folder = home.path("identities", "own", alias)
            for name in ("identity.json", "secret.json"):
                with about(folder / name):
                    (folder / name).read_bytes()  # a folder or an unreadable file in its place is named
            with about(folder):
                ident = identities.load(home, alias)
            histories[ident.did] = ident.history
        return f"{len(aliases)} identities, key files match"

    def contacts() -> str:
        dids = identities.contact_dids(home)
        for did in dids:
            # contact_dids reads DIDs off the file names: this is the file, named in any failure.
            path = home.path("identities", "contacts", did.removeprefix("did:hn:") + ".json")
            with about(path):
                identities.did_tail(did)  # refuses a file name that is no DID's
                history = verify_identity(loads_strict(path.read_bytes()))
                if history.did != did:
                    raise HnError(f"contact file {path.name} holds another DID")
            histories.setdefault(did, history)
        return f"{len(dids)} contacts verified"

    def events() -> str:
        prev, count = GENESIS_PREV, 0
        for index, path in enumerate(home.event_files(), start=1):
            event = home.read_event(path)  # its errors name the entry
            with about(path):
                signer = event.get("signer")
                history = histories.get(signer) if isinstance(signer, str) else None
                where = f"event {index} ({rel(path)})"
                if path.name != f"{index:012d}.json":
                    # Every command finds entry N by this name: one missing or renamed
                    # stops them, even where the chain itself is whole.
                    raise HnError(f"{where}: events/{index:012d}.json is missing; the log's next file is {path.name}")
                if history is None:
                    raise HnError(f"{where}: signed by unknown identity {signer}")
                try:
                    prev = verify_event(event, history, index, prev)
                except HnError as exc:
                    raise HnError(f"{where}: {exc.message}") from exc
            count = index
        return f"{count} events, hash chain and signatures intact"

    catalog_holder: list[Catalog] = []

    def catalog() -> str:
        rebuilt = replay(home)
        catalog_holder.append(rebuilt)
        cached, damage = read_cached_catalog(home)
        name = "/".join(CATALOG)
        fix = "it is a cache of the event log, and the next hn command that reads it rebuilds it"
        if damage is not None:
            raise HnError(f"{name} is damaged ({damage}); {fix}")
        if cached is not None:
            if cached.head_seq > rebuilt.head_seq:
                raise HnError(f"{name} is ahead of the event log (entry {cached.head_seq} is not in the log)")
            expected = rebuilt if cached.head_seq == rebuilt.head_seq else replay(home, upto=cached.head_seq)
            if cached.entries != expected.entries or cached.head_hash != expected.head_hash:
                raise HnError(f"{name} disagrees with the event log; {fix}")
        return f"{len(rebuilt.entries)} catalogue entries match the event log"

    def artefacts() -> str:
        if not catalog_holder:
            raise HnError(f"not checked: the catalogue ({'/'.join(CATALOG)}) could not be rebuilt from the event log")
        entries = catalog_holder[0].entries
        problems: list[str] = []  # every damaged artefact is named, not only the first
        for entry in entries.values():
            path: Path = object_path(home, entry["digest"]) if entry["kind"] == "doc" else shard_path(home, entry["id"])
            if not path.exists():
                if entry["kind"] == "shard" and entry.get("direction") == "in":
                    continue  # received shards may live only in the federation cache
                problems.append(f"{rel(path)}: artefact {entry['id']} is missing")
                continue
            try:
                with about(path):
                    digest, size = hash_file(path)
            except DiskError:
                raise
            except HnError as exc:
                problems.append(exc.message)
                continue
            if digest != entry["digest"] or size != entry["size"]:
                problems.append(f"{rel(path)}: artefact {entry['id']} does not match its digest (damaged)")
        if len(problems) == 1:
            raise HnError(problems[0])
        if problems:
            raise HnError(f"{len(problems)} of {len(entries)} artefacts failed: " + "; ".join(problems))
        return f"{len(entries)} artefact digests recomputed"

    def presence() -> str:
        folder = home.path("presence")
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        published = {e["data"].get("digest"): e["seq"] for e in home.events()
                     if e.get("kind") == "presence.publish" and isinstance(e.get("data"), dict)}
        lagging = 0
        for path in files:
            with about(path):
                doc = loads_canonical(path.read_bytes())
                history = histories.get(str(doc.get("signer"))) if isinstance(doc, dict) else None
                if history is None:
                    raise HnError("presence of an unknown identity")
                verify_presence(doc, history)
                at = published.get(doc_digest(doc))
                if at is None:
                    raise HnError("presence@2 is not recorded in the event log")
                # The presence states the index as it was when it was signed; recompute that.
                entries = replay(home, upto=at - 1).index_entries()
                if doc["index"]["root"] != index_root(entries) or doc["index"]["size"] != len(entries):
                    raise HnError("index root in presence@2 is not the recomputed root")
            if catalog_holder and index_root(catalog_holder[0].index_entries()) != doc["index"]["root"]:
                lagging += 1
        note = f"; {lagging} to be re-signed for newer index changes" if lagging else ""
        return f"{len(files)} presence documents verified, index root recomputed{note}"

    def signed_documents() -> str:
        count = 0
        for name in SIGNED_FOLDERS:
            for path in sorted(home.path(name).rglob("*.json")):
                if rel(path) in DISPOSABLE:
                    disposable(path)
                    continue
                with about(path):
                    raw = path.read_bytes()
                    doc = loads_strict(raw)
                    if not isinstance(doc, dict):
                        continue
                    # A signed document, or a record holding signed documents (a trust link
                    # beside its evidence, say): every signed document in it is verified.
                    found = [doc] if "signature" in doc and "type" in doc else [
                        v for v in doc.values() if isinstance(v, dict) and "signature" in v and "type" in v]
                    if found and canonical(doc) != raw:
                        raise HnError("not in canonical form (altered)")
                    for signed in found:
                        history = histories.get(str(signed.get("signer")))
                        if history is None:
                            history = identities.known_history(home, str(signed.get("signer")))
                        if history is None:
                            raise HnError("signer unknown")
                        verify_document(signed, history, str(signed["type"]))
                        count += 1
        return f"{count} other signed documents verified"

    def disposable(path: Path) -> None:
        try:
            loads_strict(path.read_bytes(), max_bytes=1 << 30)
        except OSError as exc:
            if (failure := storage_failure(exc)) is not None:
                raise failure from exc
            problem = os_problem(exc)
        except HnError as exc:
            problem = exc.message
        else:
            return
        report.notes.append(f"{rel(path)} is unreadable ({problem}): it is a cache, not part of what is "
                            f"verified; {DISPOSABLE[rel(path)]}")

    report.check("config", config)
    report.check("identities", own)
    report.check("contacts", contacts)
    report.check("event_log", events)
    report.check("catalog", catalog)
    report.check("artefacts", artefacts)
    report.check("presence", presence)
    report.check("signed_documents", signed_documents)
    leftovers = [rel(p) for p in leftover_temps(home)]
    if leftovers:
        report.notes.append(
            f"{len(leftovers)} temp file(s) left by an interrupted `hn doc add` ({', '.join(leftovers)}): "
            "not part of the vault; the next `hn doc add` removes them")
    return report
