"""Federated index refresh against a 100,000-artefact publisher.

Measures, in a fresh consumer process: the first full refresh (time and peak RSS), a
no-change refresh (a 304) and a one-change refresh (one new artefact), each against two
baselines measured in the same run on the same bytes: a plain aiohttp GET of every
slice (transfer only) and parsing + verifying those slices and the full Merkle root
(verification only). Figures go to tooling/bench/results/federation_refresh.json.

    python tooling/bench/federation/bench_refresh.py [--entries 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tooling.bench.federation.common import (  # noqa: E402
    NodeProcess,
    env,
    summary,
    synthetic_publish,
    vault,
    write_results,
)


def peak_rss_mib() -> float:
    """This process's RSS high-water mark (VmHWM: unlike ru_maxrss it does not carry the
    parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(consumer: Path, publisher: Path, url: str, repeat: int) -> dict[str, Any]:
    import aiohttp

    from hn.federation import service
    from hn.federation.cache import peer_dir
    from hn.proto import merkle
    from hn.proto.canonical import loads_canonical
    from hn.proto.index import TOMBSTONE, verify_slice
    from hn.vault import identities
    from hn.vault.home import Home

    home, pub_home = Home(consumer), Home(publisher)
    pub_me = identities.load(pub_home)
    out: dict[str, Any] = {"rss_before_mib": peak_rss_mib()}

    def refresh() -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        result = asyncio.run(service.refresh(home))[0]
        elapsed = time.perf_counter() - started
        if not result["ok"]:
            raise RuntimeError(result["error"])
        return elapsed, result

    elapsed, first = refresh()
    out["first_refresh"] = {"seconds": elapsed, "entries": first["entries"], "peak_rss_mib": peak_rss_mib()}
    gc.collect()

    no_change = []
    for _ in range(repeat):
        elapsed, result = refresh()
        assert result["not_modified"] and result["entries"] == 0
        no_change.append(elapsed)
    out["no_change_refresh"] = summary(no_change)

    warm, cold, transferred = [], [], []
    for i in range(repeat):
        synthetic_publish(pub_home, pub_me, 1, f"late-{i}")
        elapsed, result = refresh()  # the publisher rebuilds its snapshot inside this one
        cold.append(elapsed)
        transferred.append(result["entries"])
        synthetic_publish(pub_home, pub_me, 1, f"later-{i}")
        asyncio.run(_touch(url))  # publisher snapshot rebuilt before the timer starts
        elapsed, result = refresh()
        warm.append(elapsed)
        transferred.append(result["entries"])
    out["one_change_refresh"] = summary(warm)
    out["one_change_refresh_incl_publisher_rebuild"] = summary(cold)
    out["one_change_entries_transferred"] = sorted(set(transferred))

    # Baseline 1: the same slices over plain aiohttp GETs, no verification (publisher cache warm).
    async def plain() -> tuple[float, int, list[bytes]]:
        bodies = []
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            cursor = "0"
            while True:
                async with session.get(f"{url}/federate/index?cursor={cursor}") as resp:
                    body = await resp.read()
                bodies.append(body)
                doc = json.loads(body)
                cursor = doc["next_cursor"]
                if not doc["more"]:
                    break
            return time.perf_counter() - started, sum(len(b) for b in bodies), bodies

    asyncio.run(plain())  # fills the publisher's slice cache
    transfer = [asyncio.run(plain()) for _ in range(repeat)]
    out["baseline_plain_get"] = {**summary([t[0] for t in transfer]), "bytes": transfer[0][1],
                                 "slices": len(transfer[0][2])}

    # Baseline 2: parse and verify those same slices and recompute the full root, no network.
    bodies = transfer[0][2]
    history = identities.require_history(home, pub_me.did)
    presence = loads_canonical((peer_dir(home, pub_me.did) / "presence.json").read_bytes())
    verify_times = []
    for _ in range(repeat):
        started = time.perf_counter()
        held: dict[str, str] = {}
        for body in bodies:
            doc = loads_canonical(body)
            verify_slice(doc, history, presence)
            for entry in doc["entries"]:
                if entry["type"] != TOMBSTONE:
                    held[entry["id"]] = entry["digest"]
        ordered = sorted(held.items(), key=lambda kv: kv[0].encode())
        root = merkle.root([bytes.fromhex(d) for _, d in ordered]).hex()
        verify_times.append(time.perf_counter() - started)
        assert root == presence["index"]["root"]
    out["baseline_parse_verify_root"] = summary(verify_times)
    return out


async def _touch(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/.well-known/hn/presence") as resp:
            await resp.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=3, metavar=("CONSUMER", "PUBLISHER", "URL"))
    args = parser.parse_args()
    if args.child:
        consumer, publisher, url = args.child
        print(json.dumps(child(Path(consumer), Path(publisher), url, args.repeat)))
        return

    from hn.federation import service

    with tempfile.TemporaryDirectory(prefix="hn-bench-fed-") as tmp:
        root = Path(tmp)
        pub_home, pub_me = vault(root / "publisher", "publisher")
        started = time.perf_counter()
        synthetic_publish(pub_home, pub_me, args.entries, "bench")
        setup_s = time.perf_counter() - started
        node = NodeProcess(pub_home.root)
        try:
            con_home, _ = vault(root / "consumer", "consumer")
            asyncio.run(service.add(con_home, pub_me.did, node.url))
            proc = subprocess.run(
                [sys.executable, __file__, "--repeat", str(args.repeat), "--child", str(con_home.root),
                 str(pub_home.root), node.url], capture_output=True, text=True, env=env(con_home.root), check=False)
            if proc.returncode != 0:
                raise SystemExit(f"consumer process failed:\n{proc.stderr}")
            figures = json.loads(proc.stdout)
        finally:
            node.stop()
    figures["entries"] = args.entries
    figures["setup_publish_seconds"] = setup_s
    figures["targets"] = {"first_refresh_seconds": 10, "first_refresh_rss_mib": 300, "no_change_seconds": 0.05,
                          "one_change_seconds": 0.1}
    figures["machine"] = {"cpus": _cpus(), "python": sys.version.split()[0]}
    path = write_results("federation_refresh.json", figures)
    first = figures["first_refresh"]
    print(f"first refresh of {args.entries} entries: {first['seconds']:.2f} s, peak RSS {first['peak_rss_mib']:.0f} MiB"
          f" (plain GET of the same {figures['baseline_plain_get']['bytes'] / 1e6:.1f} MB: "
          f"{figures['baseline_plain_get']['median']:.2f} s; parse+verify+root: "
          f"{figures['baseline_parse_verify_root']['median']:.2f} s)")
    print(f"no-change refresh: median {figures['no_change_refresh']['median'] * 1000:.1f} ms")
    print(f"one-change refresh: median {figures['one_change_refresh']['median'] * 1000:.1f} ms "
          f"(with publisher rebuild: {figures['one_change_refresh_incl_publisher_rebuild']['median'] * 1000:.1f} ms),"
          f" entries transferred {figures['one_change_entries_transferred']}")
    print(f"results: {path}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
