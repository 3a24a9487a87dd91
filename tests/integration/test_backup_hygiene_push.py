"""`hn vault backup create --push-url` and `hn vault backup push` against a real node: the
error says how to resume the upload only when trying again can succeed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hn.smoke.harness import Harness, free_port

pytestmark = pytest.mark.timeout(240)

RESUMES = "` resumes the upload"


def test_a_permanent_refusal_gives_no_resume_hint_and_a_failure_that_can_pass_does(
        harness: Harness, tmp_path: Path) -> None:
    alice, bob, carol = harness.add_people("alice", "bob", "carol")
    harness.start_node(bob, dht=False)
    exported = tmp_path / "alice.identity.json"
    harness.hn(alice, "id", "export", "--out", str(exported))
    harness.hn(bob, "id", "import", str(exported))

    # Signed for carol's node: bob's refuses it (403) however often it is sent.
    failed = harness.hn(alice, "vault", "backup", "create", "--push-url", bob.url, "--target", carol.did, check=False)
    assert failed.returncode == 1 and "HTTP 403" in failed.stderr, failed.stderr
    assert RESUMES not in failed.stderr and "is kept in" in failed.stderr
    listed = harness.hn_json(alice, "vault", "backup", "list")["backups"]
    assert len(listed) == 1 and listed[0]["pushed"] == []
    for_carol = listed[0]["id"]
    again = harness.hn(alice, "vault", "backup", "push", "--id", for_carol, "--url", bob.url, check=False)
    assert again.returncode == 1 and "HTTP 403" in again.stderr and RESUMES not in again.stderr, again.stderr

    # Bob's policy denies alice: 403 too.
    harness.hn(bob, "policy", "set", "backup.accept", "deny", "--target", alice.did)
    denied = harness.hn(alice, "vault", "backup", "create", "--push-url", bob.url, "--target", bob.did, check=False)
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr and "backup.accept" in denied.stderr, denied.stderr
    assert RESUMES not in denied.stderr

    # Accepted again, but over alice's quota there (413): sending it again changes nothing.
    harness.hn(bob, "policy", "set", "backup.accept", "friends", "--target", alice.did)
    harness.hn(bob, "policy", "set", "backup.quota_bytes", "1", "--target", alice.did)
    over = harness.hn(alice, "vault", "backup", "push", "--url", bob.url, check=False)
    assert over.returncode == 1 and "HTTP 413" in over.stderr and RESUMES not in over.stderr, over.stderr

    # A node that cannot be reached may be up later: the error says how to resume.
    dead = f"http://127.0.0.1:{free_port()}"
    down = harness.hn(alice, "vault", "backup", "create", "--push-url", dead, "--target", bob.did, check=False)
    newest = harness.hn_json(alice, "vault", "backup", "list")["backups"][-1]["id"]
    assert down.returncode == 1 and f"`hn vault backup push --id {newest} --url {dead}{RESUMES}" in down.stderr, \
        down.stderr
    # With room again on bob's node, that push goes through.
    harness.hn(bob, "policy", "set", "backup.quota_bytes", str(1 << 30), "--target", alice.did)
    pushed = harness.hn_json(alice, "vault", "backup", "push", "--id", newest, "--url", bob.url)
    assert [p["id"] for p in pushed["pushed"]] == [newest]
