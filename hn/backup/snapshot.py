"""Which files of a vault a backup covers, in archive order, and the change-detection cache.

The cache maps a path to its stat key (size, mtime_ns, inode, ctime_ns) and digest as of
the last backup, so a delta learns that a file is unchanged from one ``stat`` instead of
reading it. It lives in ``sync/backup-cache.json`` and is itself never backed up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from hn.vault import atomic, leftovers
from hn.vault.home import Home

CACHE = ("sync", "backup-cache.json")
REGISTRY = ("sync", "backups.json")
# Local backup files, friends' hosted backups, runtime files, and backup bookkeeping:
# none of them is vault state, and including them would make every snapshot differ.
EXCLUDED_TOP = ("backups", "hosted", "run", ".lock")
EXCLUDED_FILES = ("sync/backup-cache.json", "sync/backups.json")
EXCLUDED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
# Files hn writers hold while they write, renamed into place only once whole: a backup
# taken meanwhile must not take a half-written one. Each is a dot-file beside its target:
# atomic writes (hn.vault.atomic) ".<name>.XXXXXXXX.tmp", and the others hn.vault.leftovers names.
TEMP_PREFIXES = leftovers.PREFIXES
SQLITE_SUFFIX = ".sqlite3"


class FileInfo(NamedTuple):
    path: str
    abspath: str
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    mode: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        """The stat fields a cached digest must match: size, mtime_ns, ino, ctime_ns (a slice:
        the four fields that follow path and abspath)."""
        return self[2:6]  # type: ignore[return-value]


def archive_mode(path: str, st_mode: int) -> int:
    """0600 for anything private (identities' folders, or group/other unreadable), else 0644."""
    if path.startswith("identities/own/") or not st_mode & 0o044:
        return 0o600
    return 0o644


def dir_mode(path: str) -> int:
    return 0o700 if path == "identities" or path.startswith("identities/") else 0o755


def scan(home: Home, include_cache: bool = False) -> tuple[list[FileInfo], list[str]]:
    """Regular files to back up, sorted by UTF-8 path bytes; plus skipped non-regular paths."""
    files: list[FileInfo] = []
    skipped: list[str] = []
    excluded_top = set(EXCLUDED_TOP) if include_cache else {*EXCLUDED_TOP, "cache"}
    excluded_files = set(EXCLUDED_FILES)
    is_dir, is_reg = stat.S_ISDIR, stat.S_ISREG
    add = files.append
    stack: list[tuple[str, str]] = [(str(home.root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for item in it:
                name = item.name
                if not prefix and name in excluded_top:
                    continue
                if name.endswith(EXCLUDED_SUFFIXES) or (
                        name[0] == "." and (".tmp" in name or name.startswith(TEMP_PREFIXES))):
                    continue
                rel = prefix + name
                if rel in excluded_files:
                    continue
                st = item.stat(follow_symlinks=False)
                if is_dir(st.st_mode):
                    stack.append((item.path, rel + "/"))
                elif is_reg(st.st_mode):
                    add(FileInfo(rel, item.path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns,
                                 archive_mode(rel, st.st_mode)))
                else:
                    skipped.append(rel)
    files.sort(key=lambda f: f.path.encode("utf-8"))
    return files, sorted(skipped)


@contextlib.contextmanager
def sqlite_snapshot(path: str | Path) -> Iterator[FileInfo | None]:
    """A consistent copy of a live SQLite database (a plain copy could be torn mid-checkpoint)."""
    with tempfile.TemporaryDirectory(prefix="hn-backup-") as tmp:
        target = Path(tmp) / "db"
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                dst = sqlite3.connect(target)
                with dst:
                    src.backup(dst)
                dst.close()
            finally:
                src.close()
        except sqlite3.Error:
            yield None
            return
        st = target.stat()
        yield FileInfo("", str(target), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, 0o600)


# -- change-detection cache ---------------------------------------------------------------
# Version 2 is one flat list, [path, size, mtime_ns, inode, ctime_ns, digest, ...]: the
# stdlib parser and encoder handle that, and it is sliced back into rows, at C speed;
# nested rows cost about a third more on a vault of 20,000 notes, where the rest of a
# delta takes a few tenths of a second.
CACHE_VERSION = 2
ROW = 6
DIGEST_CHARS = 64
_LOWER_HEX = re.compile("[0-9a-f]*")
Cache = dict[str, tuple[tuple[int, int, int, int], str]]  # path -> (FileInfo.key, digest)


def load_cache(home: Home) -> Cache:
    path = home.path(*CACHE)
    # Plain json: this file is ours, unsigned, and only ever a hint (every row is checked
    # against a fresh stat and a digest pattern); a bad file means "read everything".
    try:
        raw = json.loads(path.read_bytes())
        if type(raw) is not dict or raw.get("version") != CACHE_VERSION:
            return {}
        rows = raw["files"]
        if type(rows) is not list or len(rows) % ROW:
            return {}
        # Every digest checked at once: 64 lowercase hex characters each, or no cache.
        digests = rows[5::ROW]
        joined = "".join(digests)  # TypeError for anything but strings
        if len(joined) != DIGEST_CHARS * len(digests) or not _LOWER_HEX.fullmatch(joined):
            return {}
        keys = zip(rows[1::ROW], rows[2::ROW], rows[3::ROW], rows[4::ROW])
        return dict(zip(rows[0::ROW], zip(keys, digests)))
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return {}


def cacheable(path: str) -> bool:
    """SQLite databases are copied live by every backup (sqlite_snapshot), never cached."""
    return not path.endswith(SQLITE_SUFFIX)


def save_cache(home: Home, rows: list[str | int]) -> None:
    """``rows``: path, size, mtime_ns, inode, ctime_ns, digest for each file, flat."""
    # Plain JSON: nanosecond times exceed the integer range JCS allows, and nothing signs this file.
    body = json.dumps({"version": CACHE_VERSION, "files": rows}, separators=(",", ":"))  # ASCII, escapes included
    # Not flushed to the disk: after a crash the file is the old one, the new one or no
    # valid cache, and each of those only makes the next delta read more files.
    atomic.write_bytes(home.path(*CACHE), body.encode("ascii"), mode=0o600, durable=False)
