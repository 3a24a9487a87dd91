"""How much a reputation selector costs on the request path (relay push, backup upload).

A vault holds N trust links to N different people; a policy check for one requester runs
``hn.trust.selectors.allows`` (which computes the aggregate about that requester now).
Named baselines in the same run:

- ``load_identity``: ``identities.load`` alone, the fixed cost every check pays;
- ``verify_all_links``: verifying every one of the N link files (what a check would cost
  if links were not filed per person).

Usage: python tooling/bench/trust_selectors.py [--sizes 10,100,1000] [--repeat 15]
Writes tooling/bench/results/trust_selectors.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hn.proto import timefmt
from hn.proto import trust as proto
from hn.proto.canonical import canonical
from hn.proto.keys import IdentityKeys
from hn.trust import links, selectors
from hn.vault import identities, policy
from hn.vault.home import Home

RESULTS = Path(__file__).resolve().parent / "results" / "trust_selectors.json"


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def _vault(root: Path, n: int) -> tuple[Home, str]:
    home = Home(root / f"vault-{n}")
    home.ensure()
    me = identities.create(home, "bench")
    now = timefmt.now_iso()
    target = ""
    for i in range(n):
        peer = IdentityKeys(i.to_bytes(32, "big"), 0).did
        target = target or peer
        evidence = [{"id": f"shard:{i:064x}", "kind": "shard", "at": now, "digest": f"{i:064x}"}]
        doc = proto.build_link(me.keys, peer, evidence, context="general", ttl_seconds=86400, issued_at=now)
        path = links.link_path(home, me, doc)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(canonical({"link": doc, "evidence": evidence}))
    policy.set_policy(home, "relay.accept", "reputation.avg_confidence>=0.8")
    return home, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hn-bench-trust-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            home, target = _vault(Path(tmp), n)
            me = identities.load(home)
            allowed, reason = selectors.allows(home, "relay.accept", target)
            assert not allowed and "0.2" in reason, reason
            row = {
                "links": n,
                "allows_ms": _median_ms(lambda h=home, t=target: selectors.allows(h, "relay.accept", t), args.repeat),
                "load_identity_ms": _median_ms(lambda h=home: identities.load(h), args.repeat),
                "verify_all_links_ms": _median_ms(lambda h=home, m=me: links.my_links(h, m), args.repeat),
            }
            row["allows_vs_verify_all"] = round(row["allows_ms"] / row["verify_all_links_ms"], 3)
            rows.append(row)
            print(json.dumps(row))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "trust_selectors", "python": platform.python_version(), "cpus": os.cpu_count(),
        "repeat": args.repeat, "rows": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
