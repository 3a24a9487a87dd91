"""`hn smoke m5` runs the whole federation scenario with four real nodes and passes."""

from __future__ import annotations

import json

from tests.support import run_hn


def test_smoke_m5_passes() -> None:
    proc = run_hn(None, "smoke", "m5", "--json", timeout=280)
    report = json.loads(proc.stdout)
    assert report["ok"] is True, [s for s in report["steps"] if not s["ok"]]
    assert len(report["steps"]) == 9 and all(s["ok"] for s in report["steps"])
    names = " ".join(s["step"] for s in report["steps"])
    for part in ("DHT", "federation", "shard", "relay", "offline", "trust", "backup"):
        assert part in names
