"""`hn smoke m5` stops its nodes and removes its temporary homes when interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import hn_env


def smoke_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("hn-smoke-*"))


def node_pids_under(root: Path, nodes_only: bool = True) -> list[int]:
    """Processes whose HN_HOME lies under ``root`` (only `hn mcp serve` ones by default)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"HN_HOME={root}/".encode() in environ and (not nodes_only or b"serve" in cmdline):
            pids.append(int(proc.name))
    return pids


def test_interrupt_cleans_up() -> None:
    before = smoke_dirs()
    proc = subprocess.Popen([sys.executable, "-m", "hn", "smoke", "m5", "--json"], env=hn_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    root = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = smoke_dirs() - before
        if new:
            root = next(iter(new))
            if node_pids_under(root):  # at least one node runs
                break
        time.sleep(0.2)
    assert root is not None, "the scenario never created its homes"
    assert node_pids_under(root), "no node started"
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    deadline = time.monotonic() + 10
    while node_pids_under(root, nodes_only=False) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not node_pids_under(root, nodes_only=False), "processes left running"
    assert not root.exists(), "temporary homes left behind"
