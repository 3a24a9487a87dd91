"""A refused RFC 9421 signature says why: the target URI it covers, the body digest, a
component it leaves out, an old key; the hint about key rotation only when the signature
fails against the newest key this node knows."""

from __future__ import annotations

import datetime as dt
import os

import http_message_signatures as hms
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multidict import CIMultiDict

from hn.node import httpsig
from hn.node.httpsig import sign_request
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.proto.keys import IdentityKeys
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.unit import test_httpsig
from tests.unit.test_httpsig import Node

ROTATION_HINT = "rotated its key since"
# The same fixtures as there: bob's node, which knows alice.
bob_home = test_httpsig.bob_home
node = test_httpsig.node


def refused(status: int, data: dict[str, str]) -> str:
    assert status == 401 and data["error"] == "unauthorized", data
    assert "()" not in data["detail"], data
    return data["detail"]


async def test_a_signature_for_the_url_the_request_arrived_at_names_the_public_url(node: Node,
                                                                                   alice: Identity) -> None:
    body = b"{}"
    arrived = str(node.client.make_url("/echo"))  # the node's public URL is another one
    detail = refused(*await node.post("/echo", body, sign_request(alice.keys, "POST", arrived, body)))
    assert f"covers @target-uri {arrived}" in detail and node.base + "/echo" in detail
    assert "--public-url" in detail and ROTATION_HINT not in detail


async def test_a_signature_for_the_url_a_proxy_was_asked_for_names_it(node: Node, alice: Identity) -> None:
    body = b"{}"
    headers = sign_request(alice.keys, "POST", "https://proxy.example/echo", body)
    headers.update({"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"})
    detail = refused(*await node.post("/echo", body, headers))
    assert "covers @target-uri https://proxy.example/echo" in detail and ROTATION_HINT not in detail


async def test_a_body_that_does_not_match_its_digest_says_so(node: Node, alice: Identity) -> None:
    headers = sign_request(alice.keys, "POST", node.base + "/echo", b'{"n":1}')
    detail = refused(*await node.post("/echo", b'{"n":2}', headers))
    assert "Content-Digest" in detail and ROTATION_HINT not in detail


async def test_a_missing_digest_header_says_so(node: Node, alice: Identity) -> None:
    headers = sign_request(alice.keys, "POST", node.base + "/echo", b"{}")
    del headers["Content-Digest"]
    detail = refused(*await node.post("/echo", b"{}", headers))
    assert "content-digest" in detail and ROTATION_HINT not in detail


async def test_a_component_left_out_is_named(node: Node, alice: Identity) -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes(alice.keys.signing_key())[:32])
    message = httpsig._Message("POST", node.base + "/echo", CIMultiDict())
    signer = hms.HTTPMessageSigner(signature_algorithm=hms.algorithms.ED25519, key_resolver=httpsig._Keys(private))
    signer.sign(message, key_id=alice.did, created=dt.datetime.fromtimestamp(int(timefmt.now()), tz=dt.UTC),
                nonce=os.urandom(16).hex(), label="hn", covered_component_ids=("@method", "@target-uri"))
    detail = refused(*await node.post("/echo", b"", dict(message.headers.items())))
    assert "content-digest" in detail and "not covered" in detail and ROTATION_HINT not in detail


async def test_a_key_rotated_away_from_is_named(node: Node, alice: Identity, home: Home) -> None:
    rotated = identities.rotate(home)
    identities.import_contact(node.home, canonical(rotated.doc))
    old = IdentityKeys(rotated.keys.secret, 0)
    body = b"{}"
    detail = refused(*await node.post("/echo", body, sign_request(old, "POST", node.base + "/echo", body)))
    assert "signed with key 0" in detail and "key 1" in detail and ROTATION_HINT not in detail
    status, data = await node.post("/echo", body, sign_request(rotated.keys, "POST", node.base + "/echo", body))
    assert status == 200 and data == {"signer": alice.did}


async def test_an_unknown_newer_key_gets_the_rotation_hint(node: Node, alice: Identity, home: Home) -> None:
    rotated = identities.rotate(home)  # the node still knows key 0 only
    body = b"{}"
    detail = refused(*await node.post("/echo", body, sign_request(rotated.keys, "POST", node.base + "/echo", body)))
    assert "does not verify against key 0" in detail and ROTATION_HINT in detail
    assert f"@target-uri {node.base}/echo" in detail


async def test_a_changed_digest_header_says_so_not_rotation(node: Node, alice: Identity) -> None:
    # The header is covered by the signature, so the signature fails; the reason is the header.
    for changed in ("sha-256=:AAAA:", "sha-512=:AAAA:"):
        headers = sign_request(alice.keys, "POST", node.base + "/echo", b"{}")
        headers["Content-Digest"] = changed
        detail = refused(*await node.post("/echo", b"{}", headers))
        assert "Content-Digest" in detail and ROTATION_HINT not in detail, detail


async def test_a_signature_input_without_a_keyid_is_malformed_not_missing(node: Node, alice: Identity) -> None:
    headers = sign_request(alice.keys, "POST", node.base + "/echo", b"{}")
    headers["Signature-Input"] = "hn=("
    detail = refused(*await node.post("/echo", b"{}", headers))
    assert "malformed" in detail and "missing" not in detail, detail
