"""`hn trust fetch` exits 1 when a friend's fetch failed (as `hn mcp federate refresh`
does), keeping what the other friends exposed; 0 when every fetch worked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hn.federation import roster
from hn.trust import links
from tests.integration.test_trust_nodes import Person, _exchange, world  # noqa: F401
from tests.support import free_port, run_hn

pytestmark = pytest.mark.timeout(120)


async def test_trust_fetch_fails_when_a_friend_fails(world: dict[str, Person], tmp_path: Path) -> None:  # noqa: F811
    alice, bob, dave = world["alice"], world["bob"], world["dave"]
    await _exchange(world, tmp_path)
    links.derive(bob.home, bob.me, alice.me.did)
    home = alice.home.root

    ok = await asyncio.to_thread(run_hn, home, "trust", "fetch", "--json")
    assert json.loads(ok.stdout)["ok"] is True  # bob and carol, both running

    roster.add(alice.home, dave.me.did, f"http://127.0.0.1:{free_port()}")  # dave's node is not running
    failed = await asyncio.to_thread(run_hn, home, "trust", "fetch", "--json", check=False)
    report = json.loads(failed.stdout)
    assert failed.returncode == 1 and report["ok"] is False, failed.stderr
    rows = {r["did"]: r for r in report["peers"]}
    assert rows[dave.me.did]["ok"] is False and rows[dave.me.did]["error"]
    assert rows[bob.me.did]["ok"] is True and rows[bob.me.did]["links"] == 1  # kept
    # The report on stdout, and one line on stderr saying what failed.
    assert failed.stderr == f"error: 1 of {len(rows)} friend(s) could not be fetched: {dave.me.did}: " \
        f"{rows[dave.me.did]['error']}\n", failed.stderr
    human = await asyncio.to_thread(run_hn, home, "trust", "fetch", check=False)
    assert human.returncode == 1 and "FAILED" in human.stdout
