"""Helpers shared by the test suites: run the real `hn` entry point, pick free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
