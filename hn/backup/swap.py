"""Swap a verified staging tree into place under a journal.

Beside the target ``DIR`` live ``.DIR.restore-staging`` (the new tree, being built or
verified), ``.DIR.restore-old`` (the previous tree, once moved aside) and
``.DIR.restore-journal.json``. The order of writes:

1. staging is complete, verified and synced;
2. the journal is written (the intent);
3. ``DIR`` -> ``old`` (rename), then ``staging`` -> ``DIR`` (rename: the commit point);
4. what the journal says to keep (what backups leave out, such as the backups themselves)
   moves from ``old`` into ``DIR``, by rename;
5. ``old`` is removed, then the journal.

``recover`` inspects what is left after a crash: while ``staging`` still exists the swap
has not committed and is rolled back (``old`` goes back to ``DIR``); once it is gone the
new tree is in place and only the clean-up is finished. Either way the target holds the
whole old tree or the whole new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import os
import shutil
from collections.abc import Callable, Iterator
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


def download_folder(target: Path) -> Path:
    """A fresh, empty folder beside ``target`` for a backup fetched from a node before it
    is restored; a leftover of an interrupted restore is removed first."""
    target = target.absolute()
    folder = target.parent / f".{target.name}.restore-download"
    try:
        if os.path.lexists(folder):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
            else:
                folder.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot download beside it into {folder}", exc) from exc
    return folder


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


_GUARDS: dict[Path, list[int]] = {}  # folder -> [descriptor, depth] held by this process


@contextlib.contextmanager
def guard(target: Path) -> Iterator[None]:
    """Only one process restores into, or recovers, the vaults of one folder at a time.

    An exclusive flock on the folder that holds ``target``, taken without waiting (an
    InputError if another process holds it); taken again by the same process, it nests.
    """
    folder = target.absolute().parent
    held = _GUARDS.get(folder)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot make {folder}", exc) from exc
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot open {folder}", exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another restore into {folder} (or its recovery) is running; "
                             "try again once it is done") from None
        except OSError:
            pass  # no flock on this filesystem: nothing to guard with
        _GUARDS[folder] = [fd, 1]
        try:
            yield
        finally:
            del _GUARDS[folder]
    finally:
        os.close(fd)


def pending(target: Path) -> bool:
    """Whether an interrupted swap of ``target`` waits for ``recover`` (two stat calls)."""
    staging, _, journal = paths(target)
    return journal.exists() or staging.exists()


def recover(target: Path) -> str | None:
    """Finish or roll back an interrupted swap; returns what was done, or None (also when
    another process is restoring into the same folder: its swap is its own to finish).
    With nothing pending it costs two stat calls, so every command and the node start
    with it."""
    if not pending(target):
        return None
    try:
        with guard(target):
            return _recover(target)
    except InputError:
        return None


def _recover(target: Path) -> str | None:
    staging, old, journal = paths(target)
    if not journal.exists():
        # No intent was recorded: any staging tree is a crashed restore's leftover.
        if staging.exists():
            shutil.rmtree(staging)
            return "removed an unfinished staging folder"
        return None
    if staging.exists():
        if old.exists() and not target.exists():
            os.replace(old, target)
        shutil.rmtree(staging)
        action = "rolled back an interrupted restore (the previous vault is in place)"
    elif old.exists() and not target.exists():
        # Moved aside, yet no new tree took its place: the old one goes back, never away.
        os.replace(old, target)
        action = "rolled back an interrupted restore (the previous vault is in place)"
    else:
        if old.exists():
            _keep(old, target, _kept_paths(journal))
            shutil.rmtree(old)
        action = "completed an interrupted restore (the restored vault is in place)"
    _fsync_parent(target)
    journal.unlink(missing_ok=True)
    _fsync_parent(target)
    return action


def _kept_paths(journal: Path) -> list[str]:
    """The relative paths the journal says to carry from the old tree into the new one.

    Besides those, the rename order alone says what to do; the journal marks the intent.
    """
    try:
        doc = loads_strict(journal.read_bytes())
    except (OSError, MalformedDocument):
        return []
    keep = doc.get("keep") if isinstance(doc, dict) else None
    if not isinstance(keep, list):
        return []
    return [p for p in keep if isinstance(p, str) and p and not p.startswith("/") and ".." not in p.split("/")]


def _keep(old: Path, target: Path, keep: list[str]) -> list[str]:
    """Move each of ``keep`` from the old tree into the new one; returns those the old tree
    had. Where the new tree has one already (something wrote there before an interrupted
    restore was finished), the two are merged and nothing of the old one is lost."""
    moved = []
    for rel in keep:
        src = old / rel
        if os.path.lexists(src):
            _merge(src, target / rel)
            moved.append(rel)
    return moved


def _merge(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders on both sides merge entry by entry. A file on both
    sides: the new tree's stays, and the old one, unless identical, is kept beside it as
    ``NAME.before-restore``."""
    if not os.path.lexists(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        _fsync_parent(dst)
        return
    if _is_folder(src) and _is_folder(dst):
        for name in sorted(os.listdir(src)):
            _merge(src / name, dst / name)
        return
    if src.is_file() and dst.is_file() and filecmp.cmp(src, dst, shallow=False):
        return  # the same bytes on both sides: nothing of the old tree is lost with it
    aside = dst.with_name(dst.name + ".before-restore")
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = dst.with_name(f"{dst.name}.before-restore-{n}")
    os.replace(src, aside)
    _fsync_parent(aside)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def prepare(target: Path) -> Path:
    """A fresh, empty staging folder beside ``target`` (after recovering any old swap)."""
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot make {target.parent}", exc) from exc
    with guard(target):
        _recover(target)
    staging, _, _ = paths(target)
    try:
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise cannot(f"cannot restore into {target}: cannot make the staging folder {staging}", exc) from exc
    return staging


def commit(target: Path, staging: Path, note: dict[str, str], keep: tuple[str, ...] = ()) -> list[str]:
    """Swap ``staging`` in for ``target``; the tree at ``target`` is old or new at every instant.

    ``keep``: relative paths moved from the replaced tree into the new one afterwards
    (a crash in between is finished by ``recover``); returns those that moved.
    """
    target = target.absolute()
    _, old, journal = paths(target)
    if os.path.lexists(old):
        # recover() finishes every swap it knows of; an old tree with no journal is not
        # ours to delete.
        raise InputError(f"{old} is in the way: a previous vault may be in it; move it elsewhere first")
    _step("sync")
    atomic.sync_tree(staging)
    _step("journal")
    atomic.write_bytes(journal, canonical({"type": "restore-journal", "target": str(target),
                                          "staging": str(staging), "old": str(old), "keep": list(keep),
                                          **note}))
    _step("move-old")
    if target.exists():
        os.replace(target, old)
        _fsync_parent(target)
    _step("move-new")
    os.replace(staging, target)
    _fsync_parent(target)
    _step("keep")
    moved = _keep(old, target, list(keep)) if old.exists() else []
    _step("cleanup")
    if old.exists():
        shutil.rmtree(old)
    _step("journal-remove")
    journal.unlink(missing_ok=True)
    _fsync_parent(target)
    return moved


def abandon(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
