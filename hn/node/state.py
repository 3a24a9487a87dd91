"""Node runtime state in SQLite (WAL): peers, sync health, seq high-water marks, nonces.

The CLI and a running node open the same database; every change is one transaction, so
a kill -9 at any moment leaves the last committed state.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hn.errors import ForkError, RollbackError
from hn.proto import timefmt
from hn.vault.home import Home

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

PEER_FIELDS = ("did", "url", "cursor", "etag", "root", "size", "presence_seq", "health", "last_success",
               "last_attempt", "next_attempt", "failures", "successes", "total_failures", "last_error", "last_source")


class NodeState:
    def __init__(self, home: Home) -> None:
        home.ensure()
        self.path = home.path("sync", "node.sqlite3")
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)

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
    def check_and_record_seq(self, did: str, doc_type: str, seq: int, digest: str) -> None:
        """Refuse rollback (lower seq) and forks (same seq, other bytes); record newer."""
        with self.tx() as db:
            row = db.execute("SELECT seq, digest FROM seqs WHERE did=? AND doc_type=?", (did, doc_type)).fetchone()
            if row is not None:
                old_seq, old_digest = int(row[0]), str(row[1])
                if seq < old_seq:
                    raise RollbackError(f"{doc_type} of {did}: seq {seq} is older than {old_seq} already seen")
                if seq == old_seq:
                    if digest != old_digest:
                        now = timefmt.now()
                        for d in (old_digest, digest):
                            db.execute("INSERT OR IGNORE INTO forks VALUES (?,?,?,?,?)", (did, doc_type, seq, d, now))
                        # Committed as evidence, then refused.
                        db.execute("COMMIT")
                        db.execute("BEGIN IMMEDIATE")
                        raise ForkError(f"{doc_type} of {did}: two different documents with seq {seq} (fork)")
                    return
            db.execute("INSERT OR REPLACE INTO seqs VALUES (?,?,?,?)", (did, doc_type, seq, digest))

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
