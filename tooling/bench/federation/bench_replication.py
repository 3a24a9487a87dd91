"""Replication latency: a document published on node A appears, verified, in B's cache.

Two `hn mcp serve` processes federate with each other. Each round publishes one document
on A the way `hn doc add --publish` does (from outside A's node process), then waits
until B's state holds the entry (written only after the slice, the presence and the
recomputed root verified) and its mirrored bytes. A's node sees its presence move and
sends a signed POST /federate/notify to B, whose worker syncs at once; the background
poll interval is set to 300 s, so without the push the figure would be minutes.

Baseline in the same run: the time B's sync takes when called directly right after
the publish (no notify path), from the CLI side.

    python tooling/bench/federation/bench_replication.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tooling.bench.federation.common import NodeProcess, summary, vault, write_results  # noqa: E402

POLL = 0.005



def held(db_path: Path, did: str, entry_id: str) -> bool:
    db = sqlite3.connect(db_path, timeout=5)
    try:
        row = db.execute("SELECT mirrored FROM peer_entries WHERE did=? AND id=?", (did, entry_id)).fetchone()
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()
    return row is not None and row[0] == 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    from hn.federation import service
    from hn.federation.node_plugin import PRESENCE_POLL
    from hn.vault import presence, store

    with tempfile.TemporaryDirectory(prefix="hn-bench-repl-") as tmp:
        root = Path(tmp)
        a_home, a_me = vault(root / "a", "a")
        b_home, b_me = vault(root / "b", "b")
        files = root / "files"
        files.mkdir()
        a = NodeProcess(a_home.root, "--sync-interval", "300")
        b = NodeProcess(b_home.root, "--sync-interval", "300")
        try:
            asyncio.run(service.add(a_home, b_me.did, b.url))
            asyncio.run(service.add(b_home, a_me.did, a.url))
            db = b_home.path("sync", "node.sqlite3")
            cache = b_home.path("cache", "federation", a_me.did[len("did:hn:"):], "artifacts", "doc")
            latencies, publish_costs, missed = [], [], 0
            for i in range(args.rounds):
                # A random pause, so publishes do not fall in step with the node's watch interval.
                time.sleep(random.uniform(0, 0.3))
                note = files / f"note-{i}.md"
                note.write_text(f"note {i}: {time.time_ns()}\n")
                started = time.perf_counter()
                entry = store.add_files(a_home, a_me.keys, [note], True)[0]
                presence.refresh(a_home, a_me)
                published = time.perf_counter()
                deadline = published + args.timeout
                while not held(db, a_me.did, entry["id"]) and time.perf_counter() < deadline:
                    time.sleep(POLL)
                if not held(db, a_me.did, entry["id"]):
                    missed += 1
                    continue
                assert (cache / entry["id"]).read_bytes() == note.read_bytes()
                latencies.append(time.perf_counter() - published)
                publish_costs.append(published - started)
            # Baseline: B's sync called directly right after a publish (what the push triggers).
            direct = []
            for i in range(min(args.rounds, 20)):
                note = files / f"direct-{i}.md"
                note.write_text(f"direct {i}\n")
                store.add_files(a_home, a_me.keys, [note], True)
                presence.refresh(a_home, a_me)
                started = time.perf_counter()
                result = asyncio.run(service.refresh(b_home, mirror=True, only=a_me.did))[0]
                direct.append(time.perf_counter() - started)
                assert result["ok"], result
        finally:
            a.stop()
            b.stop()
    figures = {
        "rounds": args.rounds,
        "missed": missed,
        "publish_to_verified_in_peer_cache_seconds": summary(latencies),
        "publish_cost_seconds": summary(publish_costs),
        "baseline_direct_cli_sync_seconds": summary(direct),
        "presence_watch_interval_seconds": PRESENCE_POLL,
        "target_p95_seconds": 1.0,
    }
    path = write_results("federation_replication.json", figures)
    lat = figures["publish_to_verified_in_peer_cache_seconds"]
    print(f"replication over {len(latencies)}/{args.rounds} publishes: p50 {lat['p50'] * 1000:.0f} ms, "
          f"p95 {lat['p95'] * 1000:.0f} ms (direct CLI sync baseline median "
          f"{figures['baseline_direct_cli_sync_seconds']['median'] * 1000:.0f} ms)")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
