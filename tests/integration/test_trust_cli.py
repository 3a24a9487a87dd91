"""`hn trust` through the real entry point: one JSON document per --json call, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ServedNode, free_port, introduced, run_hn, run_json, share_a_note

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def vaults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("trust-cli")
    alice, bob, bob_did = introduced(root)
    _, shard = share_a_note(alice, bob_did, root)
    return {"root": root, "alice": alice, "bob": bob, "bob_did": bob_did, "shard": shard}


def test_derive_list_compute_publish(vaults: dict[str, object]) -> None:
    alice, bob_did, shard = vaults["alice"], str(vaults["bob_did"]), vaults["shard"]
    assert isinstance(alice, Path)
    link = run_json(alice, "trust", "link", "derive", "--to", bob_did)
    assert link["based_on"] == [f"shard:{shard}"]
    assert link["confidence"] == 0.2 and link["link"]["type"] == "trust_link@1"
    listed = run_json(alice, "trust", "link", "list")
    assert [v["id"] for v in listed["links"]] == [link["id"]]
    first = run_json(alice, "trust", "reputation", "compute", "--target", bob_did)
    again = run_json(alice, "trust", "reputation", "compute", "--target", bob_did)
    assert first["aggregate"] == again["aggregate"] == {
        "avg_confidence": 0.2, "count": 1, "max_confidence": 0.2, "min_confidence": 0.2, "stddev": 0}
    assert again["changed"] is False and again["seq"] == first["seq"]
    published = run_json(alice, "trust", "publish", "--target", bob_did)
    assert published["published"] and published["route"] == f"/trust/{bob_did}"
    checked = run_json(alice, "trust", "verify", published["path"])
    assert checked == {"ok": True, "type": "reputation@1", "observer": published["observer"],
                       "target": bob_did, "seq": published["seq"]}


def test_bad_evidence_is_a_clear_error(vaults: dict[str, object]) -> None:
    alice, bob_did = vaults["alice"], str(vaults["bob_did"])
    assert isinstance(alice, Path)
    proc = run_hn(alice, "trust", "link", "derive", "--to", bob_did, "--evidence", "shard:" + "0" * 64,
                  "--json", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: evidence shard:{'0' * 64} does not resolve in this vault"
    proc = run_hn(alice, "trust", "link", "derive", "--to", bob_did, "--confidence", "2", check=False)
    assert proc.returncode == 2 and "within [0, 1]" in proc.stderr  # a usage error


@pytest.mark.parametrize("args", [
    ("link", "derive", "--to", "BOB", "--confidence", "2"),
    ("link", "derive", "--to", "BOB", "--confidence", "-0.1"),
    ("link", "derive", "--to", "BOB", "--ttl", "0"),
    ("link", "derive", "--to", "BOB", "--ttl", "999999999999"),
    ("link", "derive", "--to", "BOB", "--context", "Not Valid"),
    ("link", "derive", "--to", "BOB", "--evidence", "nonsense"),
    ("link", "derive", "--to", "did:hn:short"),
    ("link", "derive", "--to", "ALICE"),
    ("reputation", "compute", "--target", "bob"),
    ("reputation", "publish", "--target", "bob"),
    ("publish", "--target", "did:hn:UPPER"),
    ("reputation", "fetch", "--from", "bob", "--target", "BOB"),
    ("reputation", "fetch", "--from", "BOB", "--target", "x"),
    ("reputation", "fetch", "--from", "BOB", "--target", "BOB", "--url", "ftp://127.0.0.1:1"),
    ("graph", "--format", "png"),
    ("graph", "--format", "dot", "--out", "FOLDER"),
])
def test_a_bad_option_value_is_a_usage_error(vaults: dict[str, object], args: tuple[str, ...]) -> None:
    """DESIGN: usage errors exit 2, with one line on stderr and nothing on stdout."""
    alice, bob_did, root = vaults["alice"], str(vaults["bob_did"]), vaults["root"]
    assert isinstance(alice, Path) and isinstance(root, Path)
    alice_did = run_json(alice, "id", "show")["did"]
    given = [a.replace("BOB", bob_did).replace("ALICE", alice_did).replace("FOLDER", str(root)) for a in args]
    before = sorted(p.name for p in (alice / "events").rglob("*"))
    proc = run_hn(alice, "trust", *given, "--json", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "", (given, proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal" not in lines[0], proc.stderr
    assert sorted(p.name for p in (alice / "events").rglob("*")) == before  # nothing was done


def test_graph_formats(vaults: dict[str, object]) -> None:
    alice, bob_did, root = vaults["alice"], str(vaults["bob_did"]), vaults["root"]
    assert isinstance(alice, Path) and isinstance(root, Path)
    run_json(alice, "trust", "link", "derive", "--to", bob_did)
    picture = json.loads(run_hn(alice, "trust", "graph", "--format", "json").stdout)
    assert [e["to"] for e in picture["edges"]] == [bob_did]
    assert {n["alias"] for n in picture["nodes"]} == {"alice", "bob"}
    dot_file = root / "trust.dot"
    wrote = run_json(alice, "trust", "graph", "--format", "dot", "--out", str(dot_file))
    assert wrote["edges"] == 1 and dot_file.read_text().startswith("digraph trust {")
    svg = run_hn(alice, "trust", "graph", "--format", "svg", "--out", str(root / "trust.svg"), check=False)
    if shutil.which("dot") is None:
        assert svg.returncode == 1
        assert "SVG needs Graphviz" in svg.stderr and "apt-get install graphviz" in svg.stderr
        assert not (root / "trust.svg").exists()
    else:
        assert svg.returncode == 0 and "<svg" in (root / "trust.svg").read_text()


def test_tampered_link_file_refused_by_verify_and_list(vaults: dict[str, object]) -> None:
    alice, bob_did = vaults["alice"], str(vaults["bob_did"])
    assert isinstance(alice, Path)
    link = run_json(alice, "trust", "link", "derive", "--to", bob_did, "--context", "tamper")
    path = alice / "trust" / "links" / "alice" / bob_did[7:] / f"{link['id']}.json"
    assert run_json(alice, "trust", "verify", str(path))["evidence_checked"] is True
    path.write_bytes(path.read_bytes().replace(b'"context":"tamper"', b'"context":"tampr"'))
    proc = run_hn(alice, "trust", "verify", str(path), "--json", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: trust_link@1 id does not match")
    # The list goes on with the good links and names the refused one.
    proc = run_hn(alice, "trust", "link", "list", "--json", check=False)
    assert proc.returncode == 0 and f"trust link {link['id']}.json is refused" in proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)["refused"]] == [link["id"]]
    path.unlink()


def test_reputations_about_two_targets_are_fetched_in_either_order_and_each_is_kept_from_rolling_back(
        tmp_path: Path) -> None:
    # bob observes; alice holds bob's identity and fetches from bob's node.
    alice, bob, bob_did = introduced(tmp_path)
    first, second = "did:hn:" + "a" * 32, "did:hn:" + "c" * 32
    about_first = run_json(bob, "trust", "reputation", "compute", "--target", first)
    about_second = run_json(bob, "trust", "reputation", "compute", "--target", second)
    assert about_first["seq"] < about_second["seq"]  # one count for all of bob's reputations
    old_first = Path(run_json(bob, "trust", "publish", "--target", first)["path"])
    kept_old = old_first.read_bytes()
    run_json(bob, "trust", "publish", "--target", second)
    run_hn(bob, "policy", "set", "trust.exposure", "allow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def fetch(target: str) -> subprocess.CompletedProcess[str]:
        return run_hn(alice, "trust", "reputation", "fetch", "--from", bob_did, "--target", target, "--url", url,
                      "--json", check=False)

    node = ServedNode(bob, ["--listen", f"127.0.0.1:{port}", "--no-dht"])
    try:
        # The newer one first: bob's current reputation about the first target is older, and still his current.
        assert json.loads(fetch(second).stdout)["seq"] == about_second["seq"]
        assert json.loads(fetch(first).stdout)["seq"] == about_first["seq"]
        # A new key makes bob sign a new reputation about the first target; once alice has it,
        # the older one is refused, while the other target's stays acceptable.
        run_hn(bob, "id", "rotate")
        renewed = run_json(bob, "trust", "reputation", "compute", "--target", first)
        assert renewed["seq"] > about_second["seq"]
        run_json(bob, "trust", "publish", "--target", first)
        run_hn(bob, "id", "export", "--out", str(tmp_path / "bob-rotated.json"))
        run_hn(alice, "id", "import", str(tmp_path / "bob-rotated.json"))
        assert json.loads(fetch(first).stdout)["seq"] == renewed["seq"]
        old_first.write_bytes(kept_old)  # bob's node serves the old document again
        rolled_back = fetch(first)
        assert rolled_back.returncode == 1 and "older than" in rolled_back.stderr, rolled_back.stderr
        assert json.loads(fetch(second).stdout)["seq"] == about_second["seq"]
    finally:
        node.stop()


def test_a_damaged_stored_reputation_is_signed_anew_with_a_warning(tmp_path: Path) -> None:
    alice, _, bob_did = introduced(tmp_path)
    first = run_json(alice, "trust", "reputation", "compute", "--target", bob_did)
    stored = next((alice / "trust" / "reputation").rglob(f"{bob_did[7:]}.json"))
    stored.write_bytes(stored.read_bytes()[:-20])  # cut short: no longer valid JSON
    again = run_hn(alice, "trust", "reputation", "compute", "--target", bob_did, "--json")
    renewed = json.loads(again.stdout)
    assert renewed["changed"] is True and renewed["seq"] > first["seq"]
    assert again.stderr.startswith(f"warning: the stored reputation {stored} does not verify"), again.stderr
    assert again.stderr.count("\n") == 1
    checked = run_json(alice, "trust", "verify", str(stored))
    assert checked["ok"] is True and checked["seq"] == renewed["seq"]
