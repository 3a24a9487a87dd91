"""Swap a verified staging tree into place under a journal.

Beside the target ``DIR`` live ``.DIR.restore-staging`` (the new tree, being built or
verified), ``.DIR.restore-old`` (the previous tree, once moved aside) and
``.DIR.restore-journal.json``. The order of writes:

1. staging is complete, verified and synced;
2. the journal is written (the intent);
3. ``DIR`` -> ``old`` (rename), then ``staging`` -> ``DIR`` (rename: the commit point);
4. ``old`` is removed, then the journal.

``recover`` inspects what is left after a crash: while ``staging`` still exists the swap
has not committed and is rolled back (``old`` goes back to ``DIR``); once it is gone the
new tree is in place and only the clean-up is finished. Either way the target holds the
whole old tree or the whole new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from hn.errors import InputError, MalformedDocument, cannot
from hn.proto.canonical import canonical, loads_strict
from hn.vault import atomic

# Tests inject crashes here: called with the name of each step before it runs.
fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


def paths(target: Path) -> tuple[Path, Path, Path]:
    target = target.absolute()
    parent, name = target.parent, target.name
    return (parent / f".{name}.restore-staging", parent / f".{name}.restore-old",
            parent / f".{name}.restore-journal.json")


def _fsync_parent(target: Path) -> None:
    with contextlib.suppress(OSError):
        atomic.fsync_dir(target.absolute().parent)


class EarlySync:
    """Flushes a tree's filesystem in the background while the tree is being written.

    After every ``every`` bytes handed to ``wrote``, a thread of its own calls syncfs(2),
    so the disk works while extraction goes on and the final ``atomic.sync_tree`` finds only the
    tail left. It changes when data reaches the disk, never whether: ``atomic.sync_tree`` still
    makes the tree durable before the swap.
    """

    def __init__(self, folder: Path, every: int = 32 << 20) -> None:
        import threading

        self.every = every
        self.pending = 0
        self.syncfs = atomic.syncfs()
        self.fd = os.open(folder, os.O_RDONLY) if self.syncfs is not None else -1
        self.wanted = threading.Event()
        self.done = False
        self.thread = threading.Thread(target=self._run, name="hn-early-sync", daemon=True)
        if self.syncfs is not None:
            self.thread.start()

    def wrote(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.every:
            self.pending = 0
            self.wanted.set()

    def _run(self) -> None:
        assert self.syncfs is not None
        while True:
            self.wanted.wait()
            self.wanted.clear()
            if self.done:
                return
            self.syncfs(self.fd)  # a failure shows again, and is handled, in sync_tree

    def stop(self) -> None:
        if self.syncfs is None or self.done:
            return
        self.done = True
        self.wanted.set()
        self.thread.join()
        os.close(self.fd)


def recover(target: Path) -> str | None:
    """Finish or roll back an interrupted swap; returns what was done, or None."""
    staging, old, journal = paths(target)
    if not journal.exists():
        # No intent was recorded: any staging tree is a crashed restore's leftover.
        if staging.exists():
            shutil.rmtree(staging)
            return "removed an unfinished staging folder"
        return None
    try:
        loads_strict(journal.read_bytes())
    except (OSError, MalformedDocument):
        pass  # the rename order alone says what to do; the journal only marks the intent
    if staging.exists():
        if old.exists() and not target.exists():
            os.replace(old, target)
        shutil.rmtree(staging)
        action = "rolled back an interrupted restore (the previous vault is in place)"
    else:
        if old.exists():
            shutil.rmtree(old)
        action = "completed an interrupted restore (the restored vault is in place)"
    _fsync_parent(target)
    journal.unlink(missing_ok=True)
    _fsync_parent(target)
    return action


def prepare(target: Path) -> Path:
    """A fresh, empty staging folder beside ``target`` (after recovering any old swap)."""
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot make {target.parent}", exc) from exc
    recover(target)
    staging, _, _ = paths(target)
    try:
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot make the staging folder {staging}", exc) from exc
    return staging


def commit(target: Path, staging: Path, note: dict[str, str]) -> None:
    """Swap ``staging`` in for ``target``; the tree at ``target`` is old or new at every instant."""
    target = target.absolute()
    _, old, journal = paths(target)
    if old.exists():
        shutil.rmtree(old)
    _step("sync")
    atomic.sync_tree(staging)
    _step("journal")
    atomic.write_bytes(journal, canonical({"type": "restore-journal", "target": str(target),
                                          "staging": str(staging), "old": str(old), **note}))
    _step("move-old")
    if target.exists():
        os.replace(target, old)
        _fsync_parent(target)
    _step("move-new")
    os.replace(staging, target)
    _fsync_parent(target)
    _step("cleanup")
    if old.exists():
        shutil.rmtree(old)
    _step("journal-remove")
    journal.unlink(missing_ok=True)
    _fsync_parent(target)


def abandon(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
