"""What users get wrong with the federation, relay, policy and serve commands: values a
policy cannot take, roster and relay entries edited by hand, peers and relays that fail,
and option values `hn mcp serve` cannot use. Each is named in one line, nothing the user
had is lost, and a node never answers 500 for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_node_input_cli import refused, two  # noqa: F401 - the fixture
from tests.support import ServedNode, free_port, introduced, run_hn, run_json, tree_digest

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(("name", "value"), [
    ("relay.ttl", "\u00b2"),  # a superscript two: a digit to str.isdigit, not to int()
    ("backup.retention", "\u0663"),  # an Arabic-Indic three
    ("backup.quota_bytes", "9" * 5000),  # past the digits Python converts to an int at all
    ("trust.max_age", "99999999999"),  # longer than a trust link may live
])
def test_policy_set_refuses_a_number_the_policy_cannot_use(two: tuple[Path, str], name: str,  # noqa: F811
                                                          value: str) -> None:
    alice, _ = two
    before = tree_digest(alice)
    refused(alice, "policy", "set", name, value, "--json", expect=f"{name} takes a positive whole number", code=2)
    assert tree_digest(alice) == before


def test_trust_max_age_at_its_limit_is_taken_and_trust_commands_still_work(two: tuple[Path, str]) -> None:  # noqa: F811
    alice, _ = two
    assert run_json(alice, "policy", "set", "trust.max_age", "315360000")["value"] == "315360000"
    refused(alice, "policy", "set", "trust.max_age", "315360001", expect="at most 315360000", code=2)
    assert run_json(alice, "trust", "link", "list") is not None


def test_a_per_peer_value_only_for_policies_read_per_peer(two: tuple[Path, str]) -> None:  # noqa: F811
    alice, bob = two
    before = tree_digest(alice)
    for name, value in (("relay.ttl", "60"), ("federation.mode", "friends"), ("trust.max_age", "60")):
        refused(alice, "policy", "set", name, value, "--target", bob, expect=f"{name} is one value for every peer",
                code=2)
    assert tree_digest(alice) == before
    assert run_json(alice, "policy", "set", "relay.ttl", "60", "--target", "*")["target"] == "*"
    assert run_json(alice, "policy", "set", "backup.retention", "2", "--target", bob)["target"] == bob
    shown = run_json(alice, "policy", "show")["policies"]
    assert shown["relay.ttl"]["targets"] == {"*": "60"} and shown["backup.retention"]["targets"] == {bob: "2"}


def test_a_policy_file_edited_by_hand(tmp_path: Path) -> None:
    """A value config/policy.toml cannot hold: the node does not start with it, and one
    written while the node runs does not make it answer a relay push with a 500."""
    alice, bob_home, bob = introduced(tmp_path)
    alice_did = run_json(alice, "id", "show")["did"]
    run_json(bob_home, "policy", "set", "relay.accept", "allow", "--target", alice_did)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = ServedNode(bob_home, ["--listen", f"127.0.0.1:{port}", "--no-dht", "--public-url", url])
    try:
        run_json(alice, "mcp", "relay", "register", bob, "--url", url)
        policy_file = bob_home / "config" / "policy.toml"
        policy_file.write_text(policy_file.read_text() + '\n["relay.ttl"]\ndefault = "a day"\n')
        pushed = run_json(alice, "mcp", "relay", "push")
        assert pushed["ok"] is True, pushed
    finally:
        node.stop()
    refused(bob_home, "mcp", "serve", "--listen", f"127.0.0.1:{free_port()}", "--no-dht",
            expect="relay.ttl = 'a day' (config/policy.toml): relay.ttl takes a positive whole number")


def test_roster_entries_edited_by_hand_are_named_and_kept(two: tuple[Path, str]) -> None:  # noqa: F811
    alice, bob = two
    roster_file = alice / "config" / "federation.toml"
    typo = '[[peers]]\ndid = "did:hn:typo"\nurl = "http://127.0.0.1:9"\n'
    roster_file.write_text(typo + f'\n[[peers]]\ndid = "{bob}"\nurl = "http://127.0.0.1:9"\n')
    listed = run_hn(alice, "mcp", "federate", "list", "--json")
    assert [p["did"] for p in json.loads(listed.stdout)["peers"]] == [bob]
    assert listed.stderr.startswith("warning: config/federation.toml: peer entry 1 has did = 'did:hn:typo'"), \
        listed.stderr
    run_json(alice, "mcp", "federate", "remove", bob)
    assert "did:hn:typo" in roster_file.read_text()  # the entry the user still has to fix is not dropped
    assert json.loads(run_hn(alice, "mcp", "federate", "list", "--json").stdout)["peers"] == []


def test_no_peers_is_said_in_words(two: tuple[Path, str]) -> None:  # noqa: F811
    alice, _ = two
    assert "no federation peers yet" in run_hn(alice, "mcp", "federate", "list").stdout
    assert "nothing to refresh: no federation peers yet" in run_hn(alice, "mcp", "federate", "refresh").stdout
    assert run_json(alice, "mcp", "federate", "refresh") == {"ok": True, "peers": []}


def test_a_failed_refresh_or_push_has_its_error_line(tmp_path: Path) -> None:
    alice, _, bob = introduced(tmp_path)  # alice holds bob's identity: nothing to fetch to register him
    down = f"http://127.0.0.1:{free_port()}"
    (alice / "config" / "federation.toml").write_text(f'[[peers]]\ndid = "{bob}"\nurl = "{down}"\n')
    run_json(alice, "mcp", "relay", "register", bob, "--url", down)
    for args, expect in ((["mcp", "federate", "refresh"], f"error: 1 of 1 peer(s) could not be refreshed: {bob}: "),
                         (["mcp", "relay", "push"], f"error: 1 of 1 relay(s) refused or could not be reached: {bob}: ")):
        proc = run_hn(alice, *args, "--json", check=False)
        assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False, proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expect) and "connection refused" in lines[0], proc.stderr


@pytest.mark.parametrize(("args", "expect"), [
    (["--bootstrap", "nohost"], "--bootstrap must be HOST:PORT"),
    (["--bootstrap", "127.0.0.1:0"], "--bootstrap must be HOST:PORT with a port from 1 to 65535"),
    (["--listen", "127.0.0.1:99999"], "--listen must be HOST:PORT"),
    (["--dht-listen", "nohost"], "--dht-listen must be HOST:PORT"),
    (["--public-url", "127.0.0.1:7733"], "--public-url: only http and https URLs are allowed"),
])
def test_serve_refuses_an_option_value_as_a_usage_error(two: tuple[Path, str], args: list[str],  # noqa: F811
                                                        expect: str) -> None:
    alice, _ = two
    before = tree_digest(alice)
    refused(alice, "mcp", "serve", *args, expect=expect, code=2)
    assert tree_digest(alice) == before


def test_a_relay_entry_edited_by_hand_is_named(two: tuple[Path, str]) -> None:  # noqa: F811
    alice, bob = two
    (alice / "config" / "node.toml").write_text(
        f'[[relays]]\ntype = "relay@1"\ndid = "{bob}"\nurl = "http://127.0.0.1:9"\nexpires_at = "soon"\n')
    for args in (["mcp", "relay", "list"], ["mcp", "relay", "push"]):
        refused(alice, *args, expect=f"config/node.toml: the relay entry of {bob} has expires_at 'soon'")
    run_json(alice, "mcp", "relay", "unregister", bob)
    assert run_json(alice, "mcp", "relay", "list")["relays"] == []


def test_a_url_with_a_trailing_space_shows_it(two: tuple[Path, str]) -> None:  # noqa: F811
    alice, bob = two
    refused(alice, "mcp", "federate", "add", bob, "http://127.0.0.1:7733 ",
            expect="peer URL: 'http://127.0.0.1:7733 ' contains whitespace")


@pytest.mark.parametrize("profile", [[], ["--profile", "federation"]])
def test_serve_where_there_is_no_vault_says_so_and_writes_nothing(tmp_path: Path, profile: list[str]) -> None:
    home = tmp_path / "no-vault"
    refused(home, "mcp", "serve", "--listen", f"127.0.0.1:{free_port()}", "--no-dht", *profile,
            expect=f"no vault at {home}", code=1)
    assert not home.exists()
