"""Which process serves a vault: `hn mcp serve` holds a lock on ``run/serve.lock`` for its
whole life, so a second node on the same vault is refused, and so is a restore that
would swap the vault away under a running node."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from hn.errors import InputError, cannot

LOCK = ("run", "serve.lock")
HOLD_TRIES = 5
HOLD_PAUSE = 0.05
NODE_FILE = ("run", "node.json")  # where the serving node says how to reach it


def node_info(root: Path) -> dict[str, Any] | None:
    """What the node serving the vault at ``root`` wrote in run/node.json (where it listens,
    its pid, whether it runs a DHT), if that file holds a JSON object. Whether that node
    still runs is ``served``'s to say."""
    try:
        info = json.loads(root.joinpath(*NODE_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _pid(root: Path) -> str:
    """The serving node's pid as its run/node.json gives it, for messages only."""
    pid = (node_info(root) or {}).get("pid")
    return f" (pid {pid})" if isinstance(pid, int) else ""


def hold(root: Path) -> int:
    """Take the vault's serve lock; returns the descriptor that holds it (``release``)."""
    path = root.joinpath(*LOCK)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise cannot(f"cannot lock {path}", exc) from exc
    # `served` takes the lock shared for an instant (hn status asking): a few short tries
    # before concluding that another node holds it.
    for attempt in range(HOLD_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if attempt < HOLD_TRIES - 1:
                time.sleep(HOLD_PAUSE)
    os.close(fd)
    raise InputError(f"a node is already serving {root}{_pid(root)}; stop it first")


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing the descriptor drops the lock


def served(root: Path) -> str | None:
    """A message naming the node that serves the vault at ``root``, or None if none does."""
    try:
        fd = os.open(root.joinpath(*LOCK), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no node has served this vault, or it is not one
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"a node is serving {root}{_pid(root)}"
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
