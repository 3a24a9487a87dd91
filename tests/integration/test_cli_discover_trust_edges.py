"""`hn discover` and `hn trust` given what users get wrong: malformed DIDs, HOST:PORT and DNS
name options, no node running, link files whose evidence is not what it should be."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from hn.proto.canonical import canonical
from hn.smoke.harness import Harness
from tests.integration.test_discover_dns import serve_txt
from tests.support import ServedNode, free_port, introduced, run_hn, run_json, share_a_note, tree_digest

pytestmark = pytest.mark.timeout(180)
NOBODY = "did:hn:" + "a" * 32


def one_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code``, nothing on stdout and one `error:` line on stderr."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal" not in lines[0], proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def vaults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """alice, who shared a note with bob and derived her link to him."""
    root = tmp_path_factory.mktemp("edges")
    alice, bob, bob_did = introduced(root)
    share_a_note(alice, bob_did, root)
    link = run_json(alice, "trust", "link", "derive", "--to", bob_did)
    path = alice / "trust" / "links" / "alice" / bob_did[7:] / f"{link['id']}.json"
    return {"root": root, "alice": alice, "bob": bob, "bob_did": bob_did, "link_file": path}


@pytest.mark.parametrize("args", [
    ("resolve", "did:hn:x"),
    ("resolve", NOBODY, "--bootstrap", "127.0.0.1"),
    ("resolve", NOBODY, "--bootstrap", "127.0.0.1:0"),
    ("resolve", NOBODY, "--dns-only", "--dns-name", "http://friends.test", "--dns-server", "DNS"),
    ("resolve", NOBODY, "--dns-only", "--dns-name", "friends..test", "--dns-server", "DNS"),
    ("resolve", NOBODY, "--dns-only", "--dns-name", "friends.test", "--dns-server", ""),
    ("publish", "--bootstrap", "127.0.0.1:99999"),
    ("publish", "--dns-txt", "--dns-name", "friends.test/alice"),
])
def test_a_bad_discover_argument_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Refused before any lookup (no 5 s DNS timeout, no bootstrap attempt), nothing written."""
    home = tmp_path / "alice"
    run_json(home, "id", "create", "alice")
    silent = str(free_port(socket.SOCK_DGRAM))  # nothing listens there
    before = tree_digest(home)
    proc = run_hn(home, "discover", *[a.replace("DNS", f"127.0.0.1:{silent}") for a in args], "--json", check=False)
    one_error(proc, 2)
    assert tree_digest(home) == before


def test_dns_options_given_to_a_running_node(tmp_path: Path) -> None:
    """A DNS server named by host name is looked up, through the node and without it; a DNS
    name that is no domain never becomes a TXT record to add."""
    home = tmp_path / "alice"
    run_json(home, "id", "create", "alice")
    port = free_port()
    node = ServedNode(home, ["--listen", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}",
                             "--dht-listen", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"])
    sock, dns_port = serve_txt({})
    try:
        bogus = run_hn(home, "discover", "publish", "--dns-txt", "--dns-name", "http://alice.test", "--json",
                       check=False)
        assert "not a DNS name: 'http://alice.test'" in one_error(bogus, 2)
        assert run_json(home, "discover", "publish", "--dns-txt", "--dns-name", "alice.test")["dns_txt"]["name"] \
            == "_hn.alice.test"
        for mode in ([], ["--dns-only"]):  # through the node, then as a client
            proc = run_hn(home, "discover", "resolve", NOBODY, *mode, "--dns-name", "friends.test",
                          "--dns-server", f"localhost:{dns_port}", "--json", check=False)
            assert "no TXT record at _hn.friends.test" in one_error(proc, 1), mode
    finally:
        sock.close()
        node.stop()


def test_publish_with_no_node_and_no_bootstrap_says_to_start_one(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    run_json(home, "id", "create", "alice")
    line = one_error(run_hn(home, "discover", "publish", "--json", check=False), 1)
    assert "no node is running for this vault" in line and "`hn mcp serve`" in line and "--bootstrap" in line


@pytest.mark.parametrize("evidence", ["", " , "])
def test_empty_evidence_is_a_usage_error_not_all_evidence(vaults: dict[str, object], evidence: str) -> None:
    alice, bob_did = vaults["alice"], str(vaults["bob_did"])
    assert isinstance(alice, Path)
    before = tree_digest(alice)
    proc = run_hn(alice, "trust", "link", "derive", "--to", bob_did, "--evidence", evidence, "--context", "empty",
                  "--json", check=False)
    assert "--evidence is empty" in one_error(proc, 2)
    assert tree_digest(alice) == before


@pytest.mark.parametrize("evidence", [3, "shard", [1], None])
def test_verify_refuses_evidence_that_is_not_a_list_of_objects(vaults: dict[str, object], evidence: object) -> None:
    alice, root, link_file = vaults["alice"], vaults["root"], vaults["link_file"]
    assert isinstance(alice, Path) and isinstance(root, Path) and isinstance(link_file, Path)
    stored = json.loads(link_file.read_bytes())
    damaged = root / "damaged.json"
    damaged.write_bytes(canonical({**stored, "evidence": evidence}))
    line = one_error(run_hn(alice, "trust", "verify", str(damaged), "--json", check=False), 1)
    assert "evidence beside the link is not a list of JSON objects" in line


def test_verify_names_the_file_and_the_missing_signer(vaults: dict[str, object]) -> None:
    alice, root, link_file = vaults["alice"], vaults["root"], vaults["link_file"]
    assert isinstance(alice, Path) and isinstance(root, Path) and isinstance(link_file, Path)
    header = {k: v for k, v in json.loads(link_file.read_bytes())["link"].items() if k != "signer"}
    unsigned = root / "unsigned.json"
    unsigned.write_bytes(canonical(header))
    line = one_error(run_hn(alice, "trust", "verify", str(unsigned), "--json", check=False), 1)
    assert line == "error: trust_link@1: missing field 'signer'"
    garbage = root / "garbage.json"
    garbage.write_text("{not json")
    line = one_error(run_hn(alice, "trust", "verify", str(garbage), "--json", check=False), 1)
    assert line.startswith(f"error: {garbage}: not valid JSON")


def test_reputation_fetch_from_a_stranger_says_how_to_reach_them(vaults: dict[str, object]) -> None:
    alice, bob_did = vaults["alice"], str(vaults["bob_did"])
    assert isinstance(alice, Path)
    proc = run_hn(alice, "trust", "reputation", "fetch", "--from", bob_did, "--target", NOBODY, "--json", check=False)
    line = one_error(proc, 1)
    assert "is not in your federation roster" in line and "--url" in line


def test_a_link_file_with_damaged_evidence_is_refused_everywhere(vaults: dict[str, object], tmp_path: Path) -> None:
    """Listed as refused and left out of aggregates, the graph and the node's policy checks:
    never a crash of the command or a 500 from the node."""
    alice, bob, bob_did, link_file = vaults["alice"], vaults["bob"], str(vaults["bob_did"]), vaults["link_file"]
    assert isinstance(alice, Path) and isinstance(bob, Path) and isinstance(link_file, Path)
    home = tmp_path / "alice"
    shutil.copytree(alice, home)
    copied = home / link_file.relative_to(alice)
    copied.write_bytes(canonical({**json.loads(copied.read_bytes()), "evidence": [1]}))
    listed = run_hn(home, "trust", "link", "list", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)["refused"]] == [copied.stem]
    assert "not a list of JSON objects" in listed.stderr
    assert json.loads(run_hn(home, "trust", "graph", "--format", "json").stdout)["edges"] == []
    computed = run_json(home, "trust", "reputation", "compute", "--target", bob_did)
    assert computed["aggregate"]["count"] == 0 and len(computed["refused"]) == 1
    run_json(home, "trust", "publish", "--target", bob_did)
    run_hn(home, "policy", "set", "trust.exposure", "trust_link.confidence>=0.1")
    port = free_port()
    node = ServedNode(home, ["--listen", f"127.0.0.1:{port}", "--no-dht"])
    try:
        proc = run_hn(bob, "trust", "reputation", "fetch", "--from", str(node.ready["did"]), "--target", bob_did,
                      "--url", f"http://127.0.0.1:{port}", "--json", check=False)
    finally:
        node.stop()
    assert "HTTP 403 trust.exposure does not allow" in one_error(proc, 1)


def test_graph_fetch_says_which_friend_failed(harness: Harness) -> None:
    h = harness
    alice, bob = h.add_people("alice", "bob")
    for peer in (alice, bob):
        h.start_node(peer, dht=False)
    h.federate_all([alice, bob])
    h.stop_node(bob)
    proc = h.hn(alice, "trust", "graph", "--fetch", "--format", "dot")
    assert proc.stdout.startswith("digraph trust {")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: fetching the links of {bob.did} failed"), proc.stderr


@pytest.mark.parametrize("out", ["", " "])
def test_graph_to_an_empty_out_is_a_usage_error(vaults: dict[str, object], out: str) -> None:
    alice = vaults["alice"]
    assert isinstance(alice, Path)
    proc = run_hn(alice, "trust", "graph", "--format", "dot", "--out", out, check=False)
    assert one_error(proc, 2) == "error: --out is empty: give the path of a file to write"
