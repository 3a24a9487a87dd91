"""Helpers shared by the test suites: run the real `hn` entry point and `hn mcp serve`
nodes, pick free ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hn.smoke.harness import free_port, terminate

__all__ = ["ROOT", "ServedNode", "free_port", "hn_env", "run_hn", "run_json"]

ROOT = Path(__file__).resolve().parent.parent


def hn_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    if home is not None:
        env["HN_HOME"] = str(home)
    env.update(extra)
    return env


def run_hn(home: Path | None, *args: str, input: str | None = None, check: bool = True,
           timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m hn ARGS` (the same entry point as the `hn` console script)."""
    proc = subprocess.run(
        [sys.executable, "-m", "hn", *args], input=input, capture_output=True, text=True,
        timeout=timeout, env=env or hn_env(home), cwd=str(home.parent) if home else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"hn {' '.join(args)} exited {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def run_json(home: Path | None, *args: str, input: str | None = None) -> Any:
    proc = run_hn(home, *args, "--json", input=input)
    return json.loads(proc.stdout)


class ServedNode:
    """`hn mcp serve ARGS` as a child process, ready (its MCP_READY line read) when made."""

    def __init__(self, home: Path, args: list[str]) -> None:
        self.home = home
        self.proc = subprocess.Popen([sys.executable, "-m", "hn", "mcp", "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=hn_env(home))
        self.ready: dict[str, Any] = {}
        box: list[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("MCP_READY "):
                    box.append(line)

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + 30
        while not box:
            assert self.proc.poll() is None, "node exited early"
            assert time.monotonic() < deadline, "node did not become ready"
            time.sleep(0.05)
        self.ready = json.loads(box[0][len("MCP_READY "):])

    def stop(self) -> None:
        terminate(self.proc)
