"""The vault home: folder layout, config, locking and the event log."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomli_w

from hn.errors import HnError, InputError, MalformedDocument, VaultCorrupt, cannot, os_reason, storage_failure
from hn.proto import timefmt
from hn.proto.canonical import b64d, canonical, loads_canonical
from hn.proto.events import GENESIS_PREV, event_hash, make_event
from hn.proto.keys import IdentityKeys, verify_ed25519
from hn.proto.signed import signing_bytes
from hn.vault import atomic

FOLDERS = (
    "identities", "personal", "shards", "contracts", "events", "receipts",
    "presence", "trust", "config", "sync", "cache",
)
DEFAULT_HOME = "~/.human-net"


def default_home() -> Path:
    return Path(os.environ.get("HN_HOME") or DEFAULT_HOME).expanduser()


class Home:
    """Paths, config and the event log of one vault. Knows nothing of identities' meaning."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def ensure(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root} exists and is not a folder")
        for name in FOLDERS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "identities", 0o700)

    @property
    def exists(self) -> bool:
        return (self.root / "events").is_dir()

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # -- locking ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock for writers (the CLI and a running node share one vault)."""
        self.ensure()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- config -------------------------------------------------------------------
    def read_toml(self, name: str) -> dict[str, Any]:
        path = self.path("config", name)
        if not path.exists():
            return {}
        try:
            return tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not valid TOML: {exc}") from exc

    def write_toml(self, name: str, data: dict[str, Any]) -> None:
        atomic.write_bytes(self.path("config", name), tomli_w.dumps(data).encode("utf-8"))

    # -- event log ----------------------------------------------------------------
    def event_files(self) -> list[Path]:
        folder = self.path("events")
        if not folder.is_dir():
            return []
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
        return [folder / n for n in names]

    def read_event(self, path: Path) -> dict[str, Any]:
        try:
            doc = loads_canonical(path.read_bytes())
        except OSError as exc:
            # A failing disk is not a damaged log: `hn vault verify` would send the user
            # looking for tampering when the fix is the disk.
            if storage_failure(exc) is not None:
                raise cannot(f"cannot read event log entry {path.name}", exc) from exc
            if isinstance(exc, IsADirectoryError):
                raise VaultCorrupt(f"event log entry {path.name} is a folder, not a file") from exc
            raise VaultCorrupt(f"event log entry {path.name} is unreadable: {os_reason(exc)}") from exc
        except MalformedDocument as exc:
            raise VaultCorrupt(f"event log entry {path.name} is unreadable: {exc}") from exc
        if not isinstance(doc, dict):
            raise VaultCorrupt(f"event log entry {path.name} is not an object")
        return doc

    def events(self) -> Iterator[dict[str, Any]]:
        for path in self.event_files():
            yield self.read_event(path)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest event; (0, genesis) for an empty log."""
        files = self.event_files()
        if not files:
            return 0, GENESIS_PREV
        last = self.read_event(files[-1])
        seq = last.get("seq")
        if not isinstance(seq, int) or files[-1].name != f"{seq:012d}.json":
            raise VaultCorrupt(f"event log entry {files[-1].name} does not match its name")
        return seq, event_hash(last)

    def check_head(self, keys: IdentityKeys) -> tuple[int, str]:
        """(seq, hash) of the head after checking it is sound enough to build on.

        Appending to a damaged log would bury the damage under valid entries, so the
        newest entry must chain to its predecessor and, when ``keys`` made it, carry a
        valid signature. A full check of every entry is `hn vault verify`.
        """
        files = self.event_files()
        seq, head_hash = self.head()
        if not files:
            return seq, head_hash
        last = self.read_event(files[-1])
        expected_prev = GENESIS_PREV if seq == 1 else None
        if seq > 1:
            before = self.path("events", f"{seq - 1:012d}.json")
            if not before.exists():
                raise VaultCorrupt(f"event log entry {seq - 1} is missing: run `hn vault verify`; nothing was changed")
            expected_prev = event_hash(self.read_event(before))
        damaged = f"event log entry {seq} is damaged: run `hn vault verify`; nothing was changed"
        if last.get("prev") != expected_prev:
            raise VaultCorrupt(damaged)
        if last.get("signer") == keys.did:
            key_seq = last.get("key_seq")
            try:
                signature = b64d(last.get("signature"), length=64)
            except MalformedDocument as exc:
                raise VaultCorrupt(damaged) from exc
            if not isinstance(key_seq, int) or isinstance(key_seq, bool) or not 0 <= key_seq < 2**16:
                raise VaultCorrupt(damaged)
            if not verify_ed25519(keys.signing_public(key_seq), signing_bytes(last), signature):
                raise VaultCorrupt(damaged)
        return seq, head_hash

    def append_event(self, keys: IdentityKeys, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one signed event. Callers hold ``lock()``."""
        seq, prev = self.check_head(keys)
        event = make_event(keys, seq + 1, prev, kind, data, timefmt.now_iso())
        target = self.path("events", f"{seq + 1:012d}.json")
        if target.exists():
            raise HnError("event log changed underneath this command; try again")
        atomic.write_bytes(target, canonical(event))
        return event
