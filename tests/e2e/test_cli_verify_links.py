"""`hn vault verify` also checks the signed trust links kept beside their evidence."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import run_hn, run_json


def test_verify_covers_trust_links(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_json(a, "id", "create", "alice")
    bob = run_json(b, "id", "create", "bob")["did"]
    run_hn(b, "id", "export", "--out", str(tmp_path / "bob.json"))
    run_hn(a, "id", "import", str(tmp_path / "bob.json"))
    note = tmp_path / "n.md"
    note.write_text("for bob\n")
    doc = run_json(a, "doc", "add", str(note))["added"][0]["id"]
    run_json(a, "doc", "share", doc, "--to", bob)
    run_json(a, "trust", "link", "derive", "--to", bob)
    report = run_json(a, "vault", "verify")
    signed = next(c for c in report["checks"] if c["check"] == "signed_documents")
    assert report["ok"] and signed["detail"].startswith("1 "), signed
    link_file = next(p for p in (a / "trust").rglob("*.json") if "link" in json.loads(p.read_text()))
    raw = link_file.read_bytes()
    link_file.write_bytes(raw.replace(b"0.", b"1.", 1))
    proc = run_hn(a, "vault", "verify", "--json", check=False)
    assert proc.returncode != 0 and not json.loads(proc.stdout)["ok"]
