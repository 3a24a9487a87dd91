"""The consumer side of index@2: fetch, verify, cache and mirror a friend's index.

One refresh of one peer: fetch its presence@2 (from its node, else from its relays),
verify it against the pinned key history and the seq high-water mark, fetch the
slices after our cursor (If-None-Match: a 304 ends a no-change refresh), verify every
slice, apply the changes to a staged copy of the peer's index and check that its
recomputed root equals the presence's root. Only then is anything written: slices as
signed, the materialised index and cursor (one SQLite transaction), and mirrored
artefacts, each checked against its digest before it is kept. A failure changes
nothing but the peer's health.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import blake3

from hn.errors import DiskError, HnError, InputError, NetworkError, VerificationError, os_reason, storage_failure
from hn.federation import roster
from hn.federation.cache import cached_relays, peer_dir
from hn.federation.peerindex import PeerIndex
from hn.netclient import copy_checked, error_detail, fetch_bytes, response
from hn.node.httpsig import sign_request
from hn.node.state import NodeState
from hn.proto import timefmt
from hn.proto.canonical import canonical, doc_digest, loads_canonical
from hn.proto.identity import accept_update, verify_identity
from hn.proto.index import TOMBSTONE, parse_cursor, verify_slice
from hn.proto.presence import verify_presence
from hn.vault import atomic, identities, leftovers
from hn.vault.home import Home
from hn.vault.identities import Identity

log = logging.getLogger("hn.federation")

KEEP_SLICES = 64
MAX_SLICE_BYTES = 8 * 1024 * 1024
MAX_ARTIFACT = 1 << 34
BACKOFF_BASE = 5.0
BACKOFF_CAP = 3600.0
STALE_AFTER = 3
MIRROR_PARALLEL = 8
MIRROR_BATCH = 256
# Index changes one refresh takes in at most, beyond twice the live entries its presence
# lists: the change order holds every live entry once, and each removed one once (a
# tombstone), so an honest index stays well within this; a peer paging on and on does not.
EXTRA_CHANGES = 100_000
# An artefact download may take this long plus a second per MIN_RATE bytes of its size.
ARTIFACT_TIME = 60.0
MIN_RATE = 256 * 1024
Row = tuple[str, str, str, int, str]  # type, path, digest, size, metadata JSON
# Verified peer indices of this process, by DID; used only while they match the stored root.
_INDEXES: dict[str, PeerIndex] = {}


class IndexDiverged(VerificationError):
    """Verified slices that do not add up to the presence's signed root from the copy of
    the index this node holds: the publisher's index no longer extends that copy."""


@dataclass
class _Fetched:
    """An index read from a peer, checked against its presence's root, not yet stored."""

    staged: dict[str, Row | None]  # artefact id -> row (None: a tombstone)
    slices: list[tuple[str, Path]]  # (cursor, file holding the raw slice as received)
    not_modified: bool  # the peer answered 304 to our ETag
    cursor: str  # where the next sync starts
    etag: str  # to send next time: the last slice's, or (none came) the one sent this time
    root: str
    size: int
    index: PeerIndex | None  # recomputed, when it had to be


@dataclass
class PeerResult:
    did: str
    ok: bool
    source: str = ""
    error: str = ""
    entries: int = 0
    not_modified: bool = False
    mirrored: int = 0
    root: str = ""
    size: int = 0
    cursor: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


def next_delay(failures: int, interval: float) -> float:
    """Exponential backoff with jitter, capped; the first retry waits about BACKOFF_BASE."""
    base = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(0, failures - 1)))
    return min(BACKOFF_CAP, max(1.0, base * random.uniform(0.5, 1.5)), max(interval, BACKOFF_BASE) * 8)


def health_of(row: dict[str, Any], interval: float, now: float) -> str:
    if row["failures"] > 0:
        return "failing"
    if row["last_success"] <= 0:
        return "new"
    if now - row["last_success"] > STALE_AFTER * interval:
        return "stale"
    return "ok"


class Fetcher:
    """Signed GETs to one base URL (node or relay), bounded sizes."""

    def __init__(self, session: aiohttp.ClientSession, me: Identity) -> None:
        self.session = session
        self.me = me

    async def get(self, url: str, headers: dict[str, str] | None = None,
                  max_bytes: int = MAX_SLICE_BYTES) -> tuple[int, bytes, dict[str, str]]:
        all_headers = dict(headers or {})
        all_headers.update(sign_request(self.me.keys, "GET", url, b""))
        status, body, got = await fetch_bytes(self.session, url, max_bytes=max_bytes, headers=all_headers)
        return status, body, {k.lower(): v for k, v in got.items()}

    async def get_doc(self, url: str) -> tuple[dict[str, Any], bytes]:
        status, body, _ = await self.get(url)
        if status != 200:
            raise NetworkError(f"{url}: HTTP {status} {error_detail(body)}")
        return loads_canonical(body), body


class PeerLock:
    """One sync per peer at a time, across the node and CLI processes."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".lock"
        self.fd = -1

    async def __aenter__(self) -> PeerLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        for _ in range(600):
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                await asyncio.sleep(0.05)
        os.close(self.fd)
        raise NetworkError("another sync of this peer is still running")

    async def __aexit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class Syncer:
    def __init__(self, home: Home, state: NodeState, me: Identity, session: aiohttp.ClientSession,
                 interval: float = 300.0) -> None:
        self.home = home
        self.state = state
        self.me = me
        self.fetch = Fetcher(session, me)
        self.interval = interval

    # -- identity pinning -------------------------------------------------------------
    async def pin_identity(self, did: str, base: str, url: str | None = None) -> dict[str, Any]:
        """Fetch and pin ``did``'s identity@1 from its node at ``base`` (or from ``url``)."""
        url = url or base.rstrip("/") + "/.well-known/hn/identity"
        doc, raw = await self.fetch.get_doc(url)
        history = verify_identity(doc)
        if history.did != did:
            raise VerificationError(f"{url} serves the identity of {history.did}, not {did}")
        identities.import_contact(self.home, raw)
        atomic.write_bytes(peer_dir(self.home, did) / "identity.json", canonical(doc))
        return doc

    # -- one peer -----------------------------------------------------------------------
    def _sources(self, did: str, url: str) -> list[tuple[str, str, str, str]]:
        """(label, presence URL, index URL, artefact base) to try in order: the node, then its relays."""
        out = [("node", url + "/.well-known/hn/presence", url + "/federate/index", url + "/artifact/")]
        for relay in cached_relays(self.home, did):
            base = relay["url"].rstrip("/")
            out.append((f"relay:{relay['did']}", f"{base}/relay/{did}/presence", f"{base}/relay/{did}/index",
                        f"{base}/relay/{did}/artifact/"))
        return out

    async def _presence(self, did: str, presence_url: str) -> tuple[dict[str, Any], bytes]:
        doc, raw = await self.fetch.get_doc(presence_url)
        history = identities.require_history(self.home, did)
        if isinstance(doc.get("key_seq"), int) and doc["key_seq"] >= len(history.keys):
            # The peer rotated since we pinned it: fetch its new history (from its node, or
            # from the relay that serves this presence) and accept it if it extends ours.
            url = None
            if "/.well-known/" in presence_url:
                url = presence_url.split("/.well-known/")[0] + "/.well-known/hn/identity"
            elif presence_url.endswith(f"/relay/{did}/presence"):
                url = presence_url[:-len("presence")] + "identity"
            if url is not None:
                ident = await self.pin_identity(did, "", url)
                history = accept_update(history, verify_identity(ident))
        if doc.get("did") != did:
            raise VerificationError(f"presence is for {doc.get('did')}, expected {did}")
        verify_presence(doc, history, now=timefmt.now())
        self.state.check_and_record_seq(did, "presence@2", doc["seq"], doc_digest(doc), raw)
        return doc, raw

    async def refresh_peer(self, did: str, url: str, mirror: bool = False) -> PeerResult:
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(PeerLock(peer_dir(self.home, did)))
                now = timefmt.now()
                self.state.upsert_peer(did, url)
                try:  # config/federation.toml may be edited by hand
                    roster.check_node_url(url, "peer URL")
                    bad_url = None
                except InputError as exc:
                    # The node itself cannot be asked; its relays still can.
                    bad_url = (f"node: {exc.message} (in config/{roster.FILE}; "
                               f"hn mcp federate add {did} URL replaces it)")
                return await self._refresh(did, url, mirror, now, bad_url)
            except Exception as exc:
                # The peer's folder, lock or state row could not be written. Recorded while
                # the lock (if it was taken) is still held: no other sync of the peer comes between.
                return self._storage_failed(did, url, exc)

    def _storage_failed(self, did: str, url: str, exc: Exception) -> PeerResult:
        """Record a failure of this machine's storage met outside the per-source loop; any
        other exception goes on. Recording may fail the same way: then a DiskError is raised."""
        failure = storage_failure(exc)
        if failure is None:
            raise exc
        try:
            self.state.upsert_peer(did, url)  # a peer with no row yet would otherwise record nothing
            return self._local_failure(did, timefmt.now(), [], failure.message)
        except Exception as again:
            raise (storage_failure(again) or again) from exc

    async def _refresh(self, did: str, url: str, mirror: bool, now: float, bad_url: str | None = None) -> PeerResult:
        """Try the node, then its relays; ``bad_url`` says why the node's own URL is not tried."""
        errors = [] if bad_url is None else [bad_url]
        sources = self._sources(did, url.rstrip("/"))
        for label, presence_url, index_base, artifact_base in sources[1:] if bad_url else sources:
            try:
                result = await self._refresh_from(did, label, presence_url, index_base, artifact_base, mirror)
            except NetworkError as exc:
                errors.append(f"{label}: {exc.message}")
                continue
            except DiskError as exc:
                return self._local_failure(did, now, errors, exc.message)
            except OSError as exc:  # the network's are NetworkErrors by now: this is a local file
                return self._local_failure(did, now, errors, os_reason(exc))
            except HnError as exc:
                return self._failed(did, now, f"{label}: {exc.message}")
            except Exception as exc:
                # A fault of this code, met on what the peer sent: logged as one, and the
                # peer's sync fails like any other, without stopping other peers'.
                log.exception("federation.sync.bug", extra={"hn": {"did": did, "source": label}})
                return self._failed(did, now, f"{label}: unexpected error ({type(exc).__name__}); see the node log")
            if result.extra.get("mirror_failed"):
                # The index and the artefacts that were right are kept; the peer served the
                # others wrong, which counts against it like any failure (and backs off).
                result.ok = False
                result.error = self._failed(did, now, f"{label}: {result.error}").error
                return result
            # The index came through; mirroring may still have met a full disk here.
            row = self.state.peer(did) or {}
            self.state.update_peer(did, health="ok", last_success=now, last_attempt=now, failures=0,
                                   successes=int(row.get("successes", 0)) + 1, last_error=result.error,
                                   last_source=label, next_attempt=now + self.interval)
            self.state.bump("sync_success")
            if result.error:
                self._log_local(did, result.error)
            else:
                log.info("federation.sync.success", extra={"hn": result.as_dict()})
            return result
        return self._failed(did, now, "; ".join(errors) or "no source answered")

    def _local_failure(self, did: str, now: float, errors: list[str], reason: str) -> PeerResult:
        """This machine failed (its disk), not the peer: the peer's health, failure count and
        backoff stay as they were; the sync is tried again after the usual interval."""
        reason = "; ".join([*errors, f"this node: {reason}"])
        self.state.update_peer(did, last_attempt=now, last_error=reason, next_attempt=now + self.interval)
        self._log_local(did, reason)
        return PeerResult(did, False, error=reason)

    def _log_local(self, did: str, reason: str) -> None:
        self.state.bump("sync_local_failure")
        log.warning("federation.sync.local_failure", extra={"hn": {"did": did, "error": reason}})

    def _failed(self, did: str, now: float, reason: str) -> PeerResult:
        row = self.state.peer(did) or {"failures": 0, "total_failures": 0}
        failures = int(row["failures"]) + 1
        self.state.update_peer(did, health="failing", last_attempt=now, failures=failures,
                               total_failures=int(row["total_failures"]) + 1, last_error=reason,
                               next_attempt=now + next_delay(failures, self.interval))
        self.state.bump("sync_failure")
        log.warning("federation.sync.failure", extra={"hn": {"did": did, "error": reason}})
        return PeerResult(did, False, error=reason)

    async def _refresh_from(self, did: str, label: str, presence_url: str, index_base: str,
                            artifact_base: str, mirror: bool) -> PeerResult:
        presence, presence_raw = await self._presence(did, presence_url)
        history = identities.require_history(self.home, did)
        # A relay holds the publisher's slices from cursor 0 only: read them all and
        # replace our copy of the index wholesale.
        full = label != "node"
        try:
            fetched = await self._fetch_index(did, index_base, history, presence, full)
        except IndexDiverged as exc:
            if full:
                raise
            # The publisher's index no longer extends the one we hold (a vault restored from
            # a backup, say): read it whole, checked against the same signed root.
            log.info("federation.sync.index_reread", extra={"hn": {"did": did, "reason": exc.message}})
            full = True
            fetched = await self._fetch_index(did, index_base, history, presence, full)
        staged, cursor, index = fetched.staged, fetched.cursor, fetched.index
        self._commit(did, presence_raw, fetched.slices, staged, cursor, fetched.etag, presence, full)
        if index is not None:
            _INDEXES[did] = index
        mirrored, error = 0, ""
        refused: list[str] = []
        if mirror:
            try:
                mirrored, refused = await self._mirror(did, artifact_base)
            except DiskError as exc:  # the index stands; the artefacts not stored come next sync
                error = f"this node: {exc.message}"
        result = PeerResult(did, not error, label, error, sum(1 for _ in staged), fetched.not_modified, mirrored,
                            fetched.root, fetched.size, cursor)
        if refused:
            # The index stands and the other artefacts are kept; these are tried again next sync.
            result.error = f"{len(refused)} artefact(s) not mirrored: {refused[0]}" + (
                f" (and {len(refused) - 1} more)" if len(refused) > 1 else "")
            result.extra["mirror_failed"] = len(refused)
        return result

    async def _fetch_index(self, did: str, index_base: str, history: Any, presence: dict[str, Any],
                           full: bool) -> _Fetched:
        """The index slices after our cursor (all of them when ``full``), checked against
        the presence's signed root."""
        row = self.state.peer(did) or {}
        cursor = "0" if full else str(row.get("cursor") or "0")
        etag = "" if full else str(row.get("etag") or "")
        staged: dict[str, Row | None] = {}
        # Slices wait on disk, not in memory, until the root is checked (_commit moves them).
        incoming = _incoming_slices(peer_dir(self.home, did))
        slices: list[tuple[str, Path]] = []
        not_modified = False
        new_etag = etag
        most = 2 * int(presence["index"]["size"]) + EXTRA_CHANGES
        try:
            for _page in range(10_000):
                headers = {"If-None-Match": etag} if etag and not slices else {}
                status, body, resp_headers = await self.fetch.get(f"{index_base}?cursor={cursor}", headers)
                if status == 304 and not slices:
                    not_modified = True
                    break
                if status != 200:
                    raise NetworkError(f"index: HTTP {status} {error_detail(body)}")
                doc = loads_canonical(body)
                verify_slice(doc, history, presence)
                if doc["cursor"] != cursor:
                    raise VerificationError(f"slice answers cursor {doc['cursor']}, asked {cursor}")
                if doc["more"] and (not doc["entries"] or parse_cursor(doc["next_cursor"]) <= parse_cursor(cursor)):
                    raise VerificationError(f"slice at cursor {cursor} says more follows but does not move past it")
                for entry in doc["entries"]:
                    # Compact rows, not the parsed dicts: a 100k-entry first sync holds them all.
                    staged[entry["id"]] = None if entry["type"] == TOMBSTONE else (
                        entry["type"], entry["path"], entry["digest"], entry["size"],
                        json.dumps(entry["metadata"], sort_keys=True))
                if len(staged) > most:
                    raise VerificationError(
                        f"peer sent more than {most} index changes in one refresh, for an index its presence "
                        f"says holds {presence['index']['size']} entries")
                held = incoming / f"{len(slices):05d}.json"
                await asyncio.to_thread(atomic.write_bytes, held, body)  # a DiskError if it cannot
                slices.append((cursor, held))
                new_etag = resp_headers.get("etag", "")
                cursor = doc["next_cursor"]
                if not doc["more"]:
                    break
            else:
                raise VerificationError("peer sent too many slices")
            root, size, index = self._check_root(did, staged, presence, full)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        if not slices:
            shutil.rmtree(incoming, ignore_errors=True)
        if not_modified and (root != presence["index"]["root"] or size != presence["index"]["size"]):
            raise IndexDiverged("index unchanged (304) but the presence root moved")
        return _Fetched(staged, slices, not_modified, cursor, new_etag if slices else etag, root, size, index)

    def _check_root(self, did: str, staged: dict[str, Row | None],
                    presence: dict[str, Any], full: bool = False) -> tuple[str, int, PeerIndex | None]:
        want_root, want_size = presence["index"]["root"], presence["index"]["size"]
        row = self.state.peer(did) or {}
        held = (row.get("root"), row.get("size"))
        if not full and not staged and held == (want_root, want_size):
            return want_root, want_size, None  # we hold exactly the index this root was verified for
        base = _INDEXES.get(did)
        if full:
            base = PeerIndex.build([])
        elif base is None or (base.root, base.size) != held:
            with self.state._lock:
                rows = self.state.db.execute(
                    "SELECT id, digest FROM peer_entries WHERE did=? AND type!='tombstone'", (did,)).fetchall()
            base = PeerIndex.build(rows)
        index = base.apply({i: None if row is None else row[2] for i, row in staged.items()})
        if index.root != want_root or index.size != want_size:
            raise IndexDiverged(
                f"recomputed index root {index.root[:16]}… ({index.size} entries) differs from the presence root "
                f"{want_root[:16]}… ({want_size} entries)")
        return index.root, index.size, index

    def _commit(self, did: str, presence_raw: bytes, slices: list[tuple[str, Path]],
                staged: dict[str, Row | None], cursor: str, etag: str, presence: dict[str, Any],
                full: bool = False) -> None:
        folder = peer_dir(self.home, did)
        try:
            for slice_cursor, held in slices:
                os.replace(held, folder / f"index-{slice_cursor}.json")
            if slices:
                atomic.fsync_dir(folder)
        except OSError as exc:
            raise DiskError(f"could not keep the index slices of {did} in {folder}: {exc.strerror or exc}") from exc
        finally:
            if slices:
                shutil.rmtree(slices[0][1].parent, ignore_errors=True)
        cached = folder / "presence.json"
        if not cached.exists() or cached.read_bytes() != presence_raw:
            atomic.write_bytes(cached, presence_raw)
        with self.state.tx() as db:
            if full:
                kept = [i for i, e in staged.items() if e is not None]
                # Mirrored stays mirrored only for the same path and digest.
                mirrored = {tuple(r) for r in db.execute(
                    "SELECT id, path, digest FROM peer_entries WHERE did=? AND mirrored=1", (did,)).fetchall()}
                db.execute("DELETE FROM peer_entries WHERE did=?", (did,))
                staged = {i: staged[i] for i in kept}
            else:
                mirrored = set()
            db.executemany("DELETE FROM peer_entries WHERE did=? AND id=?",
                           [(did, i) for i, row in staged.items() if row is None])
            db.executemany("INSERT OR REPLACE INTO peer_entries VALUES (?,?,?,?,?,?,?,?)",
                           [(did, i, *row, int((i, row[1], row[2]) in mirrored))
                            for i, row in staged.items() if row is not None])
            db.execute("UPDATE peers SET cursor=?, etag=?, root=?, size=?, presence_seq=? WHERE did=?",
                       (cursor, etag, presence["index"]["root"], presence["index"]["size"], presence["seq"], did))
        self._prune(did, folder)

    def _prune(self, did: str, folder: Path) -> None:
        files = sorted(folder.glob("index-*.json"), key=lambda p: p.stat().st_mtime_ns)
        for old in files[:-KEEP_SLICES]:
            old.unlink(missing_ok=True)
        if len(files) > KEEP_SLICES:
            log.info("federation.prune", extra={"hn": {"did": did, "removed": len(files) - KEEP_SLICES}})

    async def _mirror(self, did: str, base: str) -> tuple[int, list[str]]:
        """Download the artefacts not mirrored yet; returns how many now are, and why each
        one the peer served wrong (or not at all) was refused. Those stay unmirrored."""
        with self.state._lock:
            rows = self.state.db.execute(
                "SELECT id, path, digest, size FROM peer_entries WHERE did=? AND mirrored=0", (did,)).fetchall()
        if not rows:
            return 0, []
        root = peer_dir(self.home, did) / "artifacts"
        # Downloads interrupted by a crash leave temp files; under the peer lock none is live.
        for kind in ("doc", "shard"):
            for stale in (root / kind).glob(leftovers.MIRROR + "*"):
                stale.unlink(missing_ok=True)
        fence = str(root.resolve()) + os.sep
        for _id, path, _digest, _size in rows:
            if not str((root / path).resolve()).startswith(fence):
                raise VerificationError(f"artefact path {path!r} escapes the cache")
        gate = asyncio.Semaphore(MIRROR_PARALLEL)

        refused: list[str] = []

        async def one(entry_id: str, path: str, digest: str, size: int) -> str | None:
            target = root / path
            async with gate:
                # A file left by an earlier run counts only if its bytes still match.
                if await asyncio.to_thread(_holds, target, digest, int(size)):
                    return entry_id
                try:
                    await self._download(base + path, target, digest, int(size))
                except DiskError:
                    raise  # this machine's fault: no other artefact would do better
                except HnError as exc:
                    refused.append(exc.message)
                    return None
            return entry_id

        count = 0
        for start in range(0, len(rows), MIRROR_BATCH):
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(one(*row)) for row in rows[start:start + MIRROR_BATCH]]
            except BaseExceptionGroup as failed:
                raise failed.exceptions[0] from None
            # One flush for the batch, before the state says these files are held: far
            # cheaper than a sync per file, and a file lost to a crash is re-checked by digest.
            # syncfs: only the cache's filesystem, not every disk of the machine.
            try:
                await asyncio.to_thread(atomic.sync_tree, root)
            except OSError as exc:
                raise DiskError(f"could not flush the mirrored artefacts in {root}: {exc.strerror or exc}") from exc
            held = [entry_id for task in tasks if (entry_id := task.result()) is not None]
            with self.state.tx() as db:
                db.executemany("UPDATE peer_entries SET mirrored=1 WHERE did=? AND id=?", [(did, i) for i in held])
            count += len(held)
        if refused:
            log.warning("federation.mirror.refused", extra={"hn": {"did": did, "count": len(refused),
                                                                   "first": refused[0]}})
        return count, refused

    async def _download(self, url: str, target: Path, digest: str, size: int) -> None:
        # Every failure of this machine's disk is a DiskError: no other source of the peer
        # would do better, and the peer is not to blame.
        stored = f"artefact {digest[:16]}… in {target.parent}"
        headers = sign_request(self.me.keys, "GET", url, b"")
        tmp = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=leftovers.MIRROR, dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                # Bounded by the size the index lists, not by the session's limit for small documents.
                timeout = aiohttp.ClientTimeout(total=ARTIFACT_TIME + size / MIN_RATE, sock_connect=5,
                                                sock_read=ARTIFACT_TIME)
                async with response(self.fetch.session, "GET", url, headers=headers, allow_redirects=False,
                                    timeout=timeout,
                                    error=lambda u, status, _body: NetworkError(f"{u}: HTTP {status}")) as resp:
                    await copy_checked(
                        resp.content, out, size, digest, stored=stored,
                        too_large=f"artefact {digest[:16]}… is larger than the {size} bytes its index entry lists",
                        mismatch=f"artefact {digest[:16]}… does not match its digest or its size ({size} bytes) "
                                 "in the index (refused)")
            os.replace(tmp, target)
        except BaseException as exc:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):  # making, closing or renaming the temp file
                raise DiskError(f"could not store {stored}: {exc.strerror or exc}") from exc
            raise


def _holds(target: Path, digest: str, size: int) -> bool:
    try:
        if target.stat().st_size != size:
            return False
        hasher = blake3.blake3()
        if size:  # mmap of an empty file fails
            hasher.update_mmap(target)
        return bool(hasher.hexdigest() == digest)
    except OSError:
        return False


def _incoming_slices(folder: Path) -> Path:
    """A fresh folder for the slices of one refresh (under the peer lock, so any other is a
    killed refresh's leftover, removed here)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(leftovers.INCOMING + "slices-*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return Path(tempfile.mkdtemp(prefix=leftovers.INCOMING + "slices-", dir=folder))
    except OSError as exc:
        raise DiskError(f"could not make a folder for index slices in {folder}: {exc.strerror or exc}") from exc
