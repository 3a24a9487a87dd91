"""A peer's alias and the errors its answers cause reach the terminal safe: Rich markup in
an alias does not stop `hn mcp federate add` (after the peer was added), and escape
sequences in an alias or an error are printed as visible text by `federate add`, `list`,
`refresh` and `hn status`. --json keeps the peer's text exact."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hn.proto.canonical import canonical
from hn.proto.identity import build_identity
from hn.proto.keys import IdentityKeys
from hn.smoke.harness import Harness, Peer
from tests.integration.hostile import Proxy

pytestmark = pytest.mark.timeout(180)
ALIAS = "[/]\x1b[2J\x1b[31mRED\nline2\x1b]0;pwned\x07"
RAW = ("\x1b", "\x07", "\x9b")


def _resigned_identity(evil: Peer, alias: str) -> bytes:
    """evil's own identity@1, validly re-signed by evil with another alias."""
    secret = json.loads((evil.home / "identities" / "own" / "evil" / "secret.json").read_text())["secret"]
    doc = json.loads((evil.home / "identities" / "own" / "evil" / "identity.json").read_text())
    return canonical(build_identity(IdentityKeys(base64.b64decode(secret), 0), alias, doc["keys"], doc["issued_at"]))


def _clean(text: str) -> str:
    assert not any(c in text for c in RAW), repr(text)
    return text


def test_a_hostile_alias_and_error_are_shown_safe(harness: Harness, tmp_path: Path) -> None:
    h = harness
    me, evil = h.add_people("me", "evil")
    h.start_node(evil, dht=False)
    identity = _resigned_identity(evil, ALIAS)
    proxy = Proxy(evil.url)
    proxy.mutate = lambda path, status, body: (status, identity) if path == "/.well-known/hn/identity" \
        else (status, body)
    proxy.start()
    try:
        added = h.hn(me, "mcp", "federate", "add", evil.did, proxy.url, check=False)
        assert added.returncode == 0 and added.stderr == "", added.stderr
        out = _clean(added.stdout)
        assert out.startswith("federating with [/]\\x1b[2J\\x1b[31mRED\\x0aline2\\x1b]0;pwned\\x07 " + evil.did)
        assert out.count("\n") == 1
        # --json: the alias exactly as the peer signed it
        h.hn(me, "mcp", "federate", "remove", evil.did)
        assert h.hn_json(me, "mcp", "federate", "add", evil.did, proxy.url)["alias"] == ALIAS

        # The peer's presence names another DID, with escape sequences: the refusal quotes it.
        hostile_did = "\x1b]0;pwned\x07\x1b[2J"

        def presence(path: str, status: int, body: bytes) -> tuple[int, bytes]:
            if path == "/.well-known/hn/presence":
                doc = json.loads(body)
                doc["did"] = hostile_did
                return status, canonical(doc)
            return (status, identity) if path == "/.well-known/hn/identity" else (status, body)

        proxy.mutate = presence
        failed = h.hn(me, "mcp", "federate", "refresh", "--json", check=False)
        assert failed.returncode == 1
        error = json.loads(failed.stdout)["peers"][0]["error"]
        shown = []
        refresh = h.hn(me, "mcp", "federate", "refresh", check=False)
        assert refresh.returncode == 1 and "FAILED" in refresh.stdout
        shown.append(_clean(refresh.stdout))
        shown.append(_clean(h.hn(me, "mcp", "federate", "list").stdout))
        shown.append(_clean(h.hn(me, "status").stdout))
        if "\x1b" in error:  # the refusal quotes the peer's text: shown as escapes
            assert all("\\x1b" in text for text in shown), shown
    finally:
        proxy.stop()
