"""Running real `hn` processes for scenarios: temporary homes, nodes, CLI calls, steps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hn.errors import HnError


class StepFailed(HnError):
    """A scenario step failed."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> tuple[int, int]:
    """A TCP port and a UDP port that are both free now."""
    return free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)


@dataclass
class Peer:
    """One person: a home folder, and a node process when it runs."""

    name: str
    home: Path
    http_port: int
    dht_port: int
    did: str = ""
    proc: subprocess.Popen[str] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dht(self) -> str:
        return f"127.0.0.1:{self.dht_port}"


class Harness:
    def __init__(self, keep: bool = False, verbose: Callable[[str], None] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hn-smoke-"))
        self.keep = keep
        self.peers: dict[str, Peer] = {}
        self.say = verbose or (lambda _msg: None)
        self._lock = threading.Lock()

    # -- processes ------------------------------------------------------------------
    def env(self, peer: Peer | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HN_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["COLUMNS"] = "200"
        if peer is not None:
            env["HN_HOME"] = str(peer.home)
        return env

    def hn(self, peer: Peer | None, *args: str, input: str | None = None, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "hn", *args], input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.env(peer), cwd=str(self.root))
        if check and proc.returncode != 0:
            who = peer.name if peer else "-"
            detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise StepFailed(f"[{who}] hn {' '.join(args)} exited {proc.returncode}: {detail[-1] if detail else ''}")
        return proc

    def hn_json(self, peer: Peer | None, *args: str, input: str | None = None) -> Any:
        proc = self.hn(peer, *args, "--json", input=input)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise StepFailed(f"hn {' '.join(args)} --json printed no JSON document") from exc

    def add_peer(self, name: str) -> Peer:
        http_port, dht_port = free_port_pair()
        peer = Peer(name, self.root / name, http_port, dht_port)
        peer.home.mkdir(parents=True)
        self.peers[name] = peer
        return peer

    def add_people(self, *names: str) -> list[Peer]:
        """A peer per name, each with an identity of that name (``peer.did`` set)."""
        peers = [self.add_peer(name) for name in names]
        for peer in peers:
            peer.did = self.hn_json(peer, "id", "create", peer.name)["did"]
        return peers

    def federate_all(self, peers: list[Peer]) -> None:
        """Every peer adds every other as a federation peer (their nodes must be up)."""
        for peer in peers:
            for other in peers:
                if other is not peer:
                    self.hn_json(peer, "mcp", "federate", "add", other.did, other.url)

    def start_node(self, peer: Peer, *extra: str, dht: bool = True, bootstrap: list[str] | None = None,
                   timeout: float = 30, env: dict[str, str] | None = None, public_url: bool = True) -> dict[str, Any]:
        args = [sys.executable, "-m", "hn", "mcp", "serve", "--listen", f"127.0.0.1:{peer.http_port}"]
        if public_url:
            args += ["--public-url", peer.url]
        if dht:
            args += ["--dht-listen", peer.dht]
            for boot in bootstrap or []:
                args += ["--bootstrap", boot]
        else:
            args += ["--no-dht"]
        args += list(extra)
        peer.log_path = self.root / f"{peer.name}-node.log"
        log = open(peer.log_path, "a")  # noqa: SIM115 - kept open for the child's life
        peer.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True,
                                     env={**self.env(peer), **(env or {})}, cwd=str(self.root),
                                     start_new_session=True)
        peer.ready = wait_ready(peer.proc, f"node of {peer.name}", timeout, lambda: self.tail(peer))
        return peer.ready

    def tail(self, peer: Peer, lines: int = 5) -> str:
        if peer.log_path and peer.log_path.exists():
            return " | ".join(peer.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop_node(self, peer: Peer, timeout: float = 10) -> int | None:
        if peer.proc is None:
            return None
        code = terminate(peer.proc, timeout, group=True)
        # Forgotten only once stopped: if stopping failed, close() still kills the group.
        peer.proc = None
        return code

    def close(self) -> None:
        for peer in self.peers.values():
            try:
                self.stop_node(peer)
            except Exception:  # cleanup must go on whatever one process does
                if peer.proc is not None:
                    os.killpg(peer.proc.pid, signal.SIGKILL)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_ready(proc: subprocess.Popen[str], name: str, timeout: float = 30,
               tail: Callable[[], str] | None = None) -> dict[str, Any]:
    """The JSON of the MCP_READY line `hn mcp serve` prints once it listens.

    Its stdout is drained after that line, so the node never blocks on a full pipe.
    ``tail`` adds the node's last log lines to the error if it exits first.
    """
    assert proc.stdout is not None
    stdout = proc.stdout
    box: list[str] = []

    def read() -> None:
        for line in stdout:
            if line.startswith("MCP_READY ") and not box:
                box.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not box:
        if proc.poll() is not None:
            reader.join(1)  # what it printed before exiting is still in the pipe
            if box:
                break
            raise StepFailed(f"{name} exited with {proc.returncode}" + (f": {tail()}" if tail else ""))
        if time.monotonic() > deadline:
            raise StepFailed(f"{name} did not print MCP_READY within {timeout:.0f} s")
        time.sleep(0.05)
    return dict(json.loads(box[0][len("MCP_READY "):]))


def terminate(proc: subprocess.Popen[Any], timeout: float = 10, group: bool = False) -> int:
    """Stop a node process as a user would (SIGTERM), killing it (and, with ``group``, its
    process group) if it has not exited within ``timeout``; returns its exit code."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        return proc.wait(timeout=5)


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


def run_steps(steps: list[tuple[str, Callable[[], str]]], on_result: Callable[[StepResult], None]) -> list[StepResult]:
    """Run steps in order; after the first failure the rest are reported as skipped."""
    results: list[StepResult] = []
    failed = False
    for name, fn in steps:
        if failed:
            result = StepResult(name, False, 0.0, "skipped: an earlier step failed")
        else:
            start = time.monotonic()
            try:
                detail = fn()
                result = StepResult(name, True, time.monotonic() - start, detail)
            except (HnError, AssertionError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
                message = exc.message if isinstance(exc, HnError) else f"{type(exc).__name__}: {exc}"
                result = StepResult(name, False, time.monotonic() - start, message)
                failed = True
        results.append(result)
        on_result(result)
    return results
