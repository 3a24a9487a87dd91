"""What users give the node commands: URLs and option values are checked before anything
is fetched, signed or stored, and what fails is named."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServedNode, free_port, run_hn, run_json, tree_digest

BAD_URLS = [
    ("http:///nohost", "names no host"),
    ("http://[::1", "not a valid URL"),
    ("http://127.0.0.1:7733 ", "whitespace"),
    ("javascript:alert(1)", "only http and https URLs are allowed"),
    ("http://user:secret@127.0.0.1:7733", "user name or password"),
    # Refused for the password first, whatever else is wrong: nothing repeats it.
    ("ftp://user:secret@127.0.0.1", "user name or password"),
    ("http://user:sec ret@127.0.0.1", "user name or password"),
    ("http://127.0.0.1:99999", "not a valid URL"),
    ("http://127.0.0.1:7733/?x=1", "query"),
]


def refused(home: Path, *args: str, expect: str, code: int | None = None) -> str:
    proc = run_hn(home, *args, check=False, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, (args, proc.stdout)
    assert code is None or proc.returncode == code, (args, proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
    assert "internal error" not in lines[0] and expect in lines[0], (args, lines[0])
    return lines[0]


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, str]:
    """alice's vault, and the DID of bob (whose node does not run)."""
    alice = tmp_path / "alice"
    run_json(alice, "id", "create", "alice")
    bob = run_json(tmp_path / "bob", "id", "create", "bob")["did"]
    return alice, bob


@pytest.mark.parametrize(("url", "expect"), BAD_URLS)
def test_federate_add_refuses_a_bad_url(two: tuple[Path, str], url: str, expect: str) -> None:
    alice, bob = two
    before = tree_digest(alice)
    line = refused(alice, "mcp", "federate", "add", bob, url, expect=expect)
    assert "secret" not in line  # a password given in the URL is not echoed
    assert tree_digest(alice) == before


@pytest.mark.parametrize(("url", "expect"), BAD_URLS)
def test_relay_register_refuses_a_bad_url(two: tuple[Path, str], url: str, expect: str) -> None:
    alice, bob = two
    before = tree_digest(alice)
    refused(alice, "mcp", "relay", "register", bob, "--url", url, expect=expect)
    assert tree_digest(alice) == before


@pytest.mark.parametrize("days", ["-5", "0", "100000"])
def test_relay_register_refuses_a_lifetime_out_of_range(two: tuple[Path, str], days: str) -> None:
    alice, bob = two
    before = tree_digest(alice)
    refused(alice, "mcp", "relay", "register", bob, "--url", "http://127.0.0.1:7733", "--days", days,
            expect="--days must be from 1 to", code=2)
    assert tree_digest(alice) == before


@pytest.mark.parametrize(("args", "expect"), [
    (["--public-url", "javascript:alert(1)"], "--public-url"),
    (["--public-url", "http:///nohost"], "names no host"),
    (["--public-url", "https://user:pw@node.example"], "user name or password"),
    (["--sync-interval", "-1"], "--sync-interval must be a positive"),
    (["--sync-interval", "0"], "--sync-interval must be a positive"),
    (["--sync-interval", "nan"], "--sync-interval must be a positive"),
    (["--relay-ttl", "-5"], "--relay-ttl must be a positive"),
    (["--relay-ttl", "0"], "--relay-ttl must be a positive"),
])
def test_serve_refuses_bad_options(two: tuple[Path, str], args: list[str], expect: str) -> None:
    alice, _ = two
    before = tree_digest(alice)
    refused(alice, "mcp", "serve", "--listen", f"127.0.0.1:{free_port()}", "--no-dht", *args, expect=expect)
    assert tree_digest(alice) == before  # no presence signed with it


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("public_url", '"ftp://nowhere"', "public_url (from config/mcp.federation.toml)"),
    ("sync_interval", "-3", "sync_interval (from config/mcp.federation.toml) must be a positive"),
    ("ttl", "0", "[relay] ttl = '0' (config/mcp.federation.toml): relay.ttl takes a positive whole number"),
])
def test_serve_refuses_bad_values_in_the_profile(two: tuple[Path, str], field: str, value: str, expect: str) -> None:
    from hn.node import profile
    from hn.vault.home import Home

    alice, _ = two
    profile.ensure(Home(alice), {"public_url": "http://127.0.0.1:1"})
    config = alice / "config" / "mcp.federation.toml"
    lines = config.read_text().splitlines()
    edited = [f"{field} = {value}" if line.startswith(f"{field} = ") else line for line in lines]
    assert edited != lines
    config.write_text("\n".join(edited) + "\n")
    before = tree_digest(alice)
    refused(alice, "mcp", "serve", "--profile", "federation", "--listen", f"127.0.0.1:{free_port()}", "--no-dht",
            expect=expect)
    assert tree_digest(alice) == before


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain web server (not an hn node) serving ``root``: (its URL, root)."""
    root = tmp_path / "www"
    (root / ".well-known" / "hn").mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: _Files(*a, directory=str(root)))  # type: ignore[misc]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body", [b'{"hello":1}', b'{"hello": 1}', b"<html>hello</html>", b"[]"])
def test_a_url_that_is_not_an_hn_node_is_named(two: tuple[Path, str], web_server: tuple[str, Path],
                                                body: bytes) -> None:
    alice, bob = two
    url, root = web_server
    (root / ".well-known" / "hn" / "identity").write_bytes(body)
    refused(alice, "mcp", "federate", "add", bob, url,
            expect=f"{url}/.well-known/hn/identity is not an hn identity document: ")
    assert not (alice / "config" / "federation.toml").exists()
    refused(alice, "mcp", "relay", "register", bob, "--url", url,
            expect=f"{url}/.well-known/hn/identity is not an hn identity document: ")


def test_federate_add_says_when_the_url_changes(tmp_path: Path) -> None:
    alice = tmp_path / "alice"
    run_json(alice, "id", "create", "alice")
    bob_home = tmp_path / "bob"
    bob = run_json(bob_home, "id", "create", "bob")["did"]
    port = free_port()
    node = ServedNode(bob_home, ["--listen", f"127.0.0.1:{port}", "--no-dht", "--public-url",
                                 f"http://127.0.0.1:{port}"])
    try:
        first = run_json(alice, "mcp", "federate", "add", bob, f"http://127.0.0.1:{port}")
        assert first["url_changed"] is False and first["previous_url"] is None
        again = run_json(alice, "mcp", "federate", "add", bob, f"http://127.0.0.1:{port}/")
        assert again["url_changed"] is False and again["previous_url"] == f"http://127.0.0.1:{port}"
        moved = run_hn(alice, "mcp", "federate", "add", bob, f"http://localhost:{port}")
        assert f"URL changed from http://127.0.0.1:{port} to http://localhost:{port}" in moved.stdout
        peers = run_json(alice, "mcp", "federate", "list")["peers"]
        assert [p["url"] for p in peers] == [f"http://localhost:{port}"]
    finally:
        node.stop()


def test_a_peer_url_edited_by_hand_fails_that_peer_with_the_reason(two: tuple[Path, str]) -> None:
    alice, bob = two
    (alice / "config" / "federation.toml").write_text(
        f'[[peers]]\ndid = "{bob}"\nurl = "http:///nohost"\nadded_at = "2026-01-01T00:00:00Z"\n')
    proc = run_hn(alice, "mcp", "federate", "refresh", "--json", check=False)
    assert proc.returncode == 1 and "internal error" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)["peers"]
    assert len(result) == 1 and result[0]["ok"] is False and "names no host" in result[0]["error"], result
    peer = run_json(alice, "mcp", "federate", "list")["peers"][0]
    assert peer["health"] == "failing" and "names no host" in peer["last_error"], peer
