"""Node runtime state in SQLite (WAL): peers, sync health, seq high-water marks, nonces.

The CLI and a running node open the same database; every change is one transaction, so
a kill -9 at any moment leaves the last committed state.

Forks (two different documents with one seq) are refused, and kept as evidence: their
digests in the ``forks`` table, and the signed documents themselves, exactly as received,
under ``sync/forks/<did-tail>/<doc_type>-<seq>-<digest>.json``. The document already
accepted is there when its caller handed it over when it was accepted (the relay and
federation sync do; ``seq_docs`` keeps the last one per DID and type). Evidence is bounded so that a hostile
peer cannot fill the disk: at most FORK_ROWS_PER_DID digests and FORK_FILES_PER_DID files
of at most FORK_DOC_MAX bytes per DID, and FORK_FILES_TOTAL bytes in all; past a cap the
first evidence stays and later forks are refused without adding to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hn.errors import ForkError, HnError, RollbackError
from hn.proto import timefmt
from hn.vault import atomic
from hn.vault.home import Home
from hn.vault.identities import did_tail

log = logging.getLogger("hn.node")

FORK_ROWS_PER_DID = 64
FORK_FILES_PER_DID = 8
FORK_DOC_MAX = 64 * 1024
FORK_FILES_TOTAL = 16 * 1024 * 1024
# Beside node.sqlite3 after a restore: the replaced vault's database (see hn.backup.restore).
RESTORED = ".before-restore"
UNREADABLE = ".unreadable"

SCHEMA = """
CREATE TABLE IF NOT EXISTS peers (
    did TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    cursor TEXT NOT NULL DEFAULT '0',
    etag TEXT NOT NULL DEFAULT '',
    root TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    presence_seq INTEGER NOT NULL DEFAULT 0,
    health TEXT NOT NULL DEFAULT 'new',
    last_success REAL NOT NULL DEFAULT 0,
    last_attempt REAL NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    successes INTEGER NOT NULL DEFAULT 0,
    total_failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    last_source TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS seqs (
    did TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (did, doc_type)
);
CREATE TABLE IF NOT EXISTS forks (
    did TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (did, doc_type, seq, digest)
);
CREATE TABLE IF NOT EXISTS seq_docs (
    did TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    document BLOB NOT NULL,
    PRIMARY KEY (did, doc_type)
);
CREATE TABLE IF NOT EXISTS nonces (
    did TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (did, nonce)
);
CREATE TABLE IF NOT EXISTS peer_entries (
    did TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    mirrored INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (did, id)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

class SeqFork(ForkError):
    """A fork, refused; says what was kept as evidence."""

    def __init__(self, message: str, *, accepted: str, refused: str, evidence: list[Path],
                 evidence_problem: str | None) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.refused = refused
        self.evidence = evidence
        self.evidence_problem = evidence_problem


PEER_FIELDS = ("did", "url", "cursor", "etag", "root", "size", "presence_seq", "health", "last_success",
               "last_attempt", "next_attempt", "failures", "successes", "total_failures", "last_error", "last_source")


class NodeState:
    def __init__(self, home: Home) -> None:
        home.ensure()
        self.home = home
        self.path = home.path("sync", "node.sqlite3")
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)
        self._absorb_replaced()

    # -- after a restore ------------------------------------------------------------
    def _absorb_replaced(self) -> None:
        """Take in the database of the vault a restore replaced, which it kept beside this
        one (``node.sqlite3.before-restore``, ``-2``, ...): it saw newer documents and
        requests than the backup did. Removed once absorbed; one that cannot be read is
        renamed ``.unreadable`` and logged, so it is not tried at every start."""
        for old in sorted(self.path.parent.glob(self.path.name + RESTORED + "*")):
            if old.name.endswith(("-wal", "-shm", "-journal", UNREADABLE)) or not old.is_file():
                continue
            try:
                self._absorb(old)
            except sqlite3.DatabaseError as exc:
                if not old.exists():
                    continue  # absorbed and removed by another process meanwhile
                log.warning("node.state.unreadable", extra={"hn": {"path": str(old), "error": str(exc)}})
                with contextlib.suppress(OSError):
                    os.replace(old, old.with_name(old.name + UNREADABLE))
                continue
            with contextlib.suppress(OSError):  # else absorbed again next time, to the same effect
                for leftover in (old, *(old.with_name(old.name + s) for s in ("-wal", "-shm"))):
                    leftover.unlink(missing_ok=True)
            log.info("node.state.absorbed", extra={"hn": {"path": str(old)}})

    def _absorb(self, old: Path) -> None:
        """The higher seq per DID and type (with its document), both digests of one seq as
        a fork, the forks (within the cap) and the nonces not expired yet."""
        # mode=rw: a file another process absorbed and removed meanwhile is not made anew.
        src = sqlite3.connect(f"file:{urllib.parse.quote(str(old))}?mode=rw", uri=True, timeout=30)
        try:
            seqs = src.execute("SELECT did, doc_type, seq, digest FROM seqs").fetchall()
            docs = {(r[0], r[1]): r for r in src.execute("SELECT did, doc_type, seq, digest, document FROM seq_docs")}
            forks = src.execute("SELECT did, doc_type, seq, digest, seen_at FROM forks ORDER BY seen_at").fetchall()
            nonces = src.execute("SELECT did, nonce, expires FROM nonces WHERE expires >= ?",
                                 (timefmt.now(),)).fetchall()
        finally:
            src.close()
        found: list[tuple[str, str, int, dict[str, bytes | None]]] = []  # forks between the two
        with self.tx() as db:
            for did, doc_type, seq, digest in seqs:
                row = db.execute("SELECT seq, digest FROM seqs WHERE did=? AND doc_type=?", (did, doc_type)).fetchone()
                if row is not None and int(row[0]) == int(seq):
                    if row[1] != digest:
                        self._record_fork(db, did, doc_type, int(seq), (str(row[1]), str(digest)))
                        mine = db.execute("SELECT document FROM seq_docs WHERE did=? AND doc_type=? AND seq=? "
                                          "AND digest=?", (did, doc_type, seq, row[1])).fetchone()
                        theirs = docs.get((did, doc_type))
                        found.append((did, doc_type, int(seq), {
                            str(row[1]): bytes(mine[0]) if mine else None,
                            str(digest): bytes(theirs[4]) if theirs and theirs[2] == seq and theirs[3] == digest
                            else None}))
                    continue
                if row is not None and int(row[0]) > int(seq):
                    continue
                db.execute("INSERT OR REPLACE INTO seqs VALUES (?,?,?,?)", (did, doc_type, seq, digest))
                doc = docs.get((did, doc_type))
                if doc is not None and doc[2] == seq:
                    db.execute("INSERT OR REPLACE INTO seq_docs VALUES (?,?,?,?,?)", doc)
                else:
                    db.execute("DELETE FROM seq_docs WHERE did=? AND doc_type=?", (did, doc_type))
            for did, doc_type, seq, digest, seen_at in forks:
                held = db.execute("SELECT COUNT(*) FROM forks WHERE did=?", (did,)).fetchone()[0]
                if held < FORK_ROWS_PER_DID:
                    db.execute("INSERT OR IGNORE INTO forks VALUES (?,?,?,?,?)", (did, doc_type, seq, digest, seen_at))
            db.executemany("INSERT OR IGNORE INTO nonces VALUES (?,?,?)", nonces)
        # Two documents of one seq, one in each database: the same evidence a fork seen live
        # leaves (the vault restored may come from another machine of the same owner).
        for did, doc_type, seq, pair in found:
            evidence, problem = self._keep_evidence(did, doc_type, seq, pair)
            log.warning("node.state.fork", extra={"hn": {
                "did": did, "doc_type": doc_type, "seq": seq, "evidence": [str(p) for p in evidence],
                "evidence_problem": problem}})

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- seq high-water marks -----------------------------------------------------
    def check_and_record_seq(self, did: str, doc_type: str, seq: int, digest: str,
                             document: bytes | None = None) -> None:
        """Refuse rollback (lower seq) and forks (same seq, other bytes); record newer.

        ``document`` is the signed document as received: kept with the seq it raised, so
        that a later fork of it can be kept with it as evidence (see the module's notes).
        A fork raises SeqFork once its evidence is committed and written.
        """
        with self.tx() as db:
            row = db.execute("SELECT seq, digest FROM seqs WHERE did=? AND doc_type=?", (did, doc_type)).fetchone()
            if row is not None:
                old_seq, old_digest = int(row[0]), str(row[1])
                if seq < old_seq:
                    raise RollbackError(f"{doc_type} of {did}: seq {seq} is older than {old_seq} already seen")
                if seq == old_seq:
                    if digest != old_digest:
                        self._record_fork(db, did, doc_type, seq, (old_digest, digest))
                        kept = db.execute("SELECT document FROM seq_docs WHERE did=? AND doc_type=? AND seq=? "
                                          "AND digest=?", (did, doc_type, seq, old_digest)).fetchone()
                        # Committed as evidence, then refused.
                        db.execute("COMMIT")
                        db.execute("BEGIN IMMEDIATE")
                        docs = {old_digest: bytes(kept[0]) if kept else None, digest: document}
                        evidence, problem = self._keep_evidence(did, doc_type, seq, docs)
                        raise SeqFork(f"{doc_type} of {did}: two different documents with seq {seq} (fork)",
                                      accepted=old_digest, refused=digest, evidence=evidence,
                                      evidence_problem=problem)
                    if document is not None and len(document) <= FORK_DOC_MAX:
                        # Seen before without its bytes (a federation sync keeps digests only).
                        db.execute("INSERT OR REPLACE INTO seq_docs VALUES (?,?,?,?,?)",
                                   (did, doc_type, seq, digest, document))
                    return
            db.execute("INSERT OR REPLACE INTO seqs VALUES (?,?,?,?)", (did, doc_type, seq, digest))
            if document is not None and len(document) <= FORK_DOC_MAX:
                db.execute("INSERT OR REPLACE INTO seq_docs VALUES (?,?,?,?,?)", (did, doc_type, seq, digest, document))
            else:  # the one kept (if any) is for an older seq: of no use as evidence any more
                db.execute("DELETE FROM seq_docs WHERE did=? AND doc_type=?", (did, doc_type))

    @staticmethod
    def _record_fork(db: sqlite3.Connection, did: str, doc_type: str, seq: int, digests: tuple[str, str]) -> None:
        held = db.execute("SELECT COUNT(*) FROM forks WHERE did=?", (did,)).fetchone()[0]
        now = timefmt.now()
        for d in digests:
            if held >= FORK_ROWS_PER_DID:
                return
            if db.execute("INSERT OR IGNORE INTO forks VALUES (?,?,?,?,?)", (did, doc_type, seq, d, now)).rowcount:
                held += 1

    def fork_folder(self, did: str) -> Path:
        return self.home.path("sync", "forks", did_tail(did))

    def _keep_evidence(self, did: str, doc_type: str, seq: int,
                       docs: dict[str, bytes | None]) -> tuple[list[Path], str | None]:
        """Write the forked documents (as received) under fork_folder(did), within the caps.
        Returns the files that hold them and, if one could not be kept, why."""
        folder = self.fork_folder(did)
        root = folder.parent
        kept: list[Path] = []
        problems: list[str] = []
        for digest, raw in docs.items():
            target = folder / f"{doc_type}-{seq}-{digest}.json"
            if raw is None:
                problems.append(f"the document with digest {digest} was not kept when it was accepted")
                continue
            if target.exists():
                kept.append(target)
                continue
            if len(raw) > FORK_DOC_MAX:
                problems.append(f"the document with digest {digest} is over {FORK_DOC_MAX} bytes")
                continue
            held = sorted(folder.glob("*.json")) if folder.is_dir() else []
            if len(held) >= FORK_FILES_PER_DID:
                problems.append(f"{did} already has {FORK_FILES_PER_DID} documents kept as fork evidence")
                continue
            if _tree_bytes(root) + len(raw) > FORK_FILES_TOTAL:
                problems.append(f"fork evidence already takes {FORK_FILES_TOTAL} bytes in all")
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
                atomic.write_new(target, raw)
            except (HnError, OSError) as exc:  # refusing the fork matters more than its copy
                problems.append(f"could not write {target}: {exc}")
                continue
            kept.append(target)
        return kept, "; ".join(problems) or None

    def high_water(self, did: str, doc_type: str) -> int:
        with self._lock:
            row = self.db.execute("SELECT seq FROM seqs WHERE did=? AND doc_type=?", (did, doc_type)).fetchone()
        return int(row[0]) if row else 0

    def forks(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute("SELECT did, doc_type, seq, digest, seen_at FROM forks ORDER BY seen_at").fetchall()
        return [dict(zip(("did", "doc_type", "seq", "digest", "seen_at"), r)) for r in rows]

    # -- nonces -------------------------------------------------------------------
    def remember_nonce(self, did: str, nonce: str, expires: float) -> bool:
        """False if this nonce was seen before (a replay)."""
        with self.tx() as db:
            db.execute("DELETE FROM nonces WHERE expires < ?", (timefmt.now() - 1,))
            try:
                db.execute("INSERT INTO nonces VALUES (?,?,?)", (did, nonce, expires))
            except sqlite3.IntegrityError:
                return False
        return True

    # -- peers --------------------------------------------------------------------
    def upsert_peer(self, did: str, url: str) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO peers (did, url) VALUES (?, ?) ON CONFLICT(did) DO UPDATE SET url=excluded.url",
                       (did, url))

    def remove_peer(self, did: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM peers WHERE did=?", (did,))

    def peer(self, did: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(f"SELECT {', '.join(PEER_FIELDS)} FROM peers WHERE did=?", (did,)).fetchone()
        return dict(zip(PEER_FIELDS, row)) if row else None

    def peers(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(f"SELECT {', '.join(PEER_FIELDS)} FROM peers ORDER BY did").fetchall()
        return [dict(zip(PEER_FIELDS, r)) for r in rows]

    def update_peer(self, did: str, **fields: Any) -> None:
        bad = set(fields) - set(PEER_FIELDS)
        if bad:
            raise ValueError(f"unknown peer fields {bad}")
        if not fields:
            return
        assignments = ", ".join(f"{k}=?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE peers SET {assignments} WHERE did=?", (*fields.values(), did))

    # -- counters -----------------------------------------------------------------
    def bump(self, name: str, by: int = 1) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+?",
                       (name, by, by))

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {str(k): int(v) for k, v in self.db.execute("SELECT name, value FROM counters")}


def _tree_bytes(folder: Path) -> int:
    total = 0
    if folder.is_dir():
        for path in folder.rglob("*"):
            try:
                total += path.stat().st_size if path.is_file() else 0
            except OSError:
                continue
    return total
