"""A tampered trust link through the real `hn` entry point: reported the same way by every command."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import introduced, run_hn, run_json, share_a_note


def test_a_tampered_link_is_reported_alike_by_list_graph_and_reputation(tmp_path: Path) -> None:
    alice, _, bob_did = introduced(tmp_path)
    share_a_note(alice, bob_did, tmp_path)
    good = run_json(alice, "trust", "link", "derive", "--to", bob_did)
    bad = run_json(alice, "trust", "link", "derive", "--to", bob_did, "--context", "work")
    path = alice / "trust" / "links" / "alice" / bob_did[7:] / f"{bad['id']}.json"
    raw = path.read_bytes()
    assert raw.count(b'"confidence":0.2,') == 1
    path.write_bytes(raw.replace(b'"confidence":0.2,', b'"confidence":0.9,'))

    listed = run_hn(alice, "trust", "link", "list", "--json")
    data = json.loads(listed.stdout)
    assert [v["id"] for v in data["links"]] == [good["id"]]
    [refused] = data["refused"]
    assert refused["id"] == bad["id"] and refused["to"] == bob_did
    assert refused["file"] == str(path.relative_to(alice)) and "confidence differs" in refused["reason"]
    assert listed.stderr.startswith("warning: 1 trust link(s) refused") and bad["id"] in listed.stderr
    human = run_hn(alice, "trust", "link", "list")
    assert good["id"][:12] in human.stdout and "REFUSED" in human.stdout and bad["id"][:12] in human.stdout

    graph = run_hn(alice, "trust", "graph", "--format", "json")
    picture = json.loads(graph.stdout)
    assert [e["id"] for e in picture["edges"]] == [good["id"]] and len(picture["refused"]) == 1
    assert "left out of the graph" in graph.stderr and bad["id"] in graph.stderr
    dot = run_hn(alice, "trust", "graph", "--format", "dot", "--out", str(tmp_path / "g.dot"), "--json")
    assert json.loads(dot.stdout)["refused"] == picture["refused"] and "left out of the graph" in dot.stderr

    rep = run_hn(alice, "trust", "reputation", "compute", "--target", bob_did, "--json")
    computed = json.loads(rep.stdout)
    assert computed["links"] == [f"trust_link:{good['id']}"] and len(computed["refused"]) == 1
    assert "left out of the aggregate" in rep.stderr
