"""`hn discover resolve` with a DHT bootstrap peer that does not answer says so, whatever
the mode, instead of claiming there was nothing to resolve with."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hn.smoke.harness import free_port
from tests.support import run_hn, run_json


@pytest.mark.parametrize(("mode", "expect_also"), [
    ([], "no DNS name to try either"),
    (["--dht-only"], ""),
    (["--cache-fallback"], "no cached presence for "),
    (["--dht-only", "--cache-fallback"], "no cached presence for "),
])
def test_a_silent_bootstrap_peer_is_the_reason_given(tmp_path: Path, mode: list[str], expect_also: str) -> None:
    home = tmp_path / "alice"
    run_json(home, "id", "create", "alice")
    bob = run_json(tmp_path / "bob", "id", "create", "bob")["did"]
    silent = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"  # nothing listens there
    proc = run_hn(home, "discover", "resolve", bob, "--bootstrap", silent, *mode, check=False, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"no DHT bootstrap peer answered ({silent})" in lines[0], lines[0]
    assert "nothing to resolve with" not in lines[0] and expect_also in lines[0], lines[0]
