"""`hn vault verify` also checks the signed trust links kept beside their evidence."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import introduced, run_hn, run_json, share_a_note


def test_verify_covers_trust_links(tmp_path: Path) -> None:
    a, _, bob = introduced(tmp_path)
    share_a_note(a, bob, tmp_path)
    run_json(a, "trust", "link", "derive", "--to", bob)
    report = run_json(a, "vault", "verify")
    signed = next(c for c in report["checks"] if c["check"] == "signed_documents")
    assert report["ok"] and signed["detail"].startswith("1 "), signed
    link_file = next(p for p in (a / "trust").rglob("*.json") if "link" in json.loads(p.read_text()))
    raw = link_file.read_bytes()
    link_file.write_bytes(raw.replace(b"0.", b"1.", 1))
    proc = run_hn(a, "vault", "verify", "--json", check=False)
    assert proc.returncode != 0 and not json.loads(proc.stdout)["ok"]
