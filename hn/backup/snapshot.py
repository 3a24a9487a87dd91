"""Which files of a vault a backup covers, in archive order, and the change-detection cache.

The cache maps a path to (size, mtime_ns, inode, ctime_ns, digest) as of the last
backup, so a delta learns that a file is unchanged from one ``stat`` instead of reading
it. It lives in ``sync/backup-cache.json`` and is itself never backed up.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from hn.proto.canonical import is_hex_digest
from hn.vault import atomic
from hn.vault.home import Home

CACHE = ("sync", "backup-cache.json")
REGISTRY = ("sync", "backups.json")
# Local backup files, friends' hosted backups, runtime files, and backup bookkeeping:
# none of them is vault state, and including them would make every snapshot differ.
EXCLUDED_TOP = ("backups", "hosted", "run", ".lock")
EXCLUDED_FILES = ("sync/backup-cache.json", "sync/backups.json")
EXCLUDED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
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
    def key(self) -> list[int]:
        return [self.size, self.mtime_ns, self.ino, self.ctime_ns]


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
                if name.endswith(EXCLUDED_SUFFIXES) or (name[0] == "." and ".tmp" in name):
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
def load_cache(home: Home) -> dict[str, list[int | str]]:
    path = home.path(*CACHE)
    # Plain json: this file is ours, unsigned, and only ever a hint (every row is checked
    # against a fresh stat and a digest pattern); a bad file means "read everything".
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(raw, dict) or not isinstance(raw.get("files"), dict):
        return {}
    return raw["files"]


def cached_digest(cache: dict[str, list[int | str]], info: FileInfo) -> str | None:
    row = cache.get(info.path)
    if (type(row) is not list or len(row) != 5 or row[0] != info.size or row[1] != info.mtime_ns
            or row[2] != info.ino or row[3] != info.ctime_ns):
        return None
    digest = row[4]
    return digest if isinstance(digest, str) and is_hex_digest(digest) else None


def save_cache(home: Home, files: dict[str, list[int | str]]) -> None:
    # Plain JSON: nanosecond times exceed the integer range JCS allows, and nothing signs this file.
    body = json.dumps({"version": 1, "files": files}, separators=(",", ":"), sort_keys=True)
    atomic.write_bytes(home.path(*CACHE), body.encode("utf-8"), mode=0o600)
