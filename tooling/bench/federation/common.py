"""Shared set-up for the federation benchmarks: vaults, synthetic publishers, node processes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3

from hn.smoke.harness import free_port, terminate
from hn.vault import identities, presence
from hn.vault.home import Home
from hn.vault.identities import Identity

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "tooling" / "bench" / "results"
BATCH = 10_000


def env(home: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("HN_")}
    out["HN_HOME"] = str(home)
    out["PYTHONPATH"] = str(ROOT)
    return out


def vault(path: Path, alias: str) -> tuple[Home, Identity]:
    home = Home(path)
    home.ensure()
    return home, identities.create(home, alias)


def synthetic_publish(home: Home, me: Identity, count: int, tag: str) -> list[str]:
    """Index ``count`` artefacts in one event without writing their bytes: the index
    benchmarks never fetch artefacts, and writing 100k files would dominate the set-up."""
    from hn.proto import timefmt
    from hn.vault.store import load_catalog

    now = timefmt.now_iso()
    items = []
    for i in range(count):
        digest = blake3.blake3(f"{tag}:{i}".encode()).hexdigest()
        items.append({"id": digest, "digest": digest, "size": 100 + i % 1000, "name": f"n{i:06d}.txt",
                      "media_type": "text/plain", "published": True, "added_at": now})
    with home.lock():
        for start in range(0, len(items), BATCH):  # events stay under the 16 MiB document cap
            home.append_event(me.keys, "doc.add", {"items": items[start:start + BATCH]})
        load_catalog(home, persist=True)
    presence.refresh(home, me)
    return [i["id"] for i in items]


class NodeProcess:
    """`hn mcp serve` in its own process, as a user runs it."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hn", "mcp", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--public-url", self.url, "--no-dht", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(home))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("MCP_READY "):
            self.stop()
            raise RuntimeError(f"node did not start: {line!r}")
        self.ready: dict[str, Any] = json.loads(line[len("MCP_READY "):])

    def stop(self) -> None:
        terminate(self.proc)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {"n": len(ordered), "median": statistics.median(ordered), "p50": pct(0.5), "p95": pct(0.95),
            "min": ordered[0], "max": ordered[-1]}


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
