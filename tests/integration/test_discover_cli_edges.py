"""`hn discover` at its edges: stray cache files, a --home with no vault, the configured
TXT name, the reasons given when resolving falls back to a relay or to the cache."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from hn.smoke.harness import Harness, free_port
from tests.integration.test_discover_dns import serve_txt
from tests.support import relayed_trio, run_hn, run_json

NOBODY = "did:hn:" + "a" * 32


def test_cache_list_lists_stray_entries_as_not_ok(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    run_json(home, "id", "create", "alice")
    folder = home / "cache" / "discover"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.json").write_text("{}")
    (folder / "x.json").mkdir()
    proc = run_hn(home, "discover", "cache", "list", "--json")
    entries = json.loads(proc.stdout)["entries"]
    assert [(e["did"], e["ok"]) for e in entries] == [("did:hn:notes", False), ("did:hn:x", False)], entries
    assert "not a did:hn DID" in entries[0]["error"] and "not a file" in entries[1]["error"]
    table = run_hn(home, "discover", "cache", "list")
    assert "did:hn:notes" in table.stdout and table.stderr == ""


def test_read_commands_make_no_vault(tmp_path: Path) -> None:
    missing = tmp_path / "nohome"
    for args in (["discover", "resolve", NOBODY], ["discover", "cache", "list"]):
        proc = run_hn(missing, *args, "--json", check=False)
        assert proc.returncode == 1 and proc.stdout == "", proc
        assert proc.stderr.startswith(f"error: no vault at {missing}"), proc.stderr
        assert not missing.exists()


def test_dns_only_uses_the_configured_txt_name(tmp_path: Path) -> None:
    home = tmp_path / "reader"
    run_json(home, "id", "create", "reader")
    config = home / "config" / "dht.toml"
    config.write_text('[dns]\ntxt_name = "friends.test"\n')
    sock, port = serve_txt({})
    try:
        proc = run_hn(home, "discover", "resolve", NOBODY, "--dns-only", "--dns-server", f"127.0.0.1:{port}",
                      check=False)
    finally:
        sock.close()
    assert proc.returncode == 1 and "no TXT record at _hn.friends.test" in proc.stderr, proc.stderr
    config.unlink()
    usage = run_hn(home, "discover", "resolve", NOBODY, "--dns-only", check=False)
    assert usage.returncode == 2 and "[dns] txt_name" in usage.stderr, usage.stderr


def test_cache_fallback_with_a_corrupt_entry_still_names_the_network_failure(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    run_json(home, "id", "create", "alice")
    bob = run_json(tmp_path / "bob", "id", "create", "bob")["did"]
    entry = home / "cache" / "discover" / f"{bob[7:]}.json"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text("{not json")
    silent = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"  # nothing listens there
    proc = run_hn(home, "discover", "resolve", bob, "--bootstrap", silent, "--cache-fallback", check=False, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"no DHT bootstrap peer answered ({silent})" in lines[0] and "does not verify" in lines[0], lines[0]


def test_a_relay_answer_says_the_node_was_never_asked(harness: Harness) -> None:
    """No DHT and no DNS name: the relay named in bob's last presence answers; the node
    itself was not asked, and the answer must not claim it did not answer."""
    h = harness
    alice, bob, carol = relayed_trio(h)
    h.hn_json(carol, "mcp", "federate", "refresh")
    h.stop_node(carol)  # carol resolves as a client, with no DHT at all
    got = h.hn_json(carol, "discover", "resolve", bob.did)
    assert got["source"] == f"relay:{alice.did}" and got["presence"]["did"] == bob.did
    assert "did not answer" not in got["detail"] and "no hint or DNS record" in got["detail"], got["detail"]
