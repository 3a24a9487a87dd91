"""RFC 9421 request signatures: what verifies, and every way a request is refused (THREATS 1)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hn.node.context import CTX_KEY, NodeContext
from hn.node.http import errors_middleware, read_body
from hn.node.httpsig import WINDOW, sign_request, verify_request
from hn.node.state import NodeState
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.vault import identities
from hn.vault.home import Home
from hn.vault.identities import Identity


async def echo(request: web.Request) -> web.Response:
    ctx: NodeContext = request.app[CTX_KEY]
    body = await read_body(request, 4096)
    return web.json_response({"signer": await verify_request(ctx, request, body)})


class Node:
    """A node's verifier behind a real aiohttp server; its public URL is what signatures must name."""

    def __init__(self, home: Home, client: TestClient, ctx: NodeContext) -> None:
        self.home, self.client, self.ctx = home, client, ctx

    @property
    def base(self) -> str:
        return self.ctx.base_url

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        resp = await self.client.post(path, data=body, headers=headers)
        return resp.status, await resp.json()


async def start_node(home: Home, base: str = "http://node-b.test:7733") -> AsyncIterator[Node]:
    me = identities.load(home)
    app = web.Application(middlewares=[errors_middleware])
    ctx = NodeContext(home=home, identity=me, app=app, settings={}, state=NodeState(home), base_url=base)
    app[CTX_KEY] = ctx
    app.router.add_post("/echo", echo)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Node(home, client, ctx)
    finally:
        await client.close()
        ctx.state.close()


@pytest.fixture
def bob_home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "bob")
    h.ensure()
    identities.create(h, "bob")
    return h


@pytest.fixture
async def node(bob_home: Home, alice: Identity) -> AsyncIterator[Node]:
    # bob's node knows alice: her identity is pinned as a contact
    identities.import_contact(bob_home, canonical(alice.doc))
    async for n in start_node(bob_home):
        yield n


async def test_signed_request_verifies(node: Node, alice: Identity) -> None:
    body = b'{"hello":1}'
    status, data = await node.post("/echo", body, sign_request(alice.keys, "POST", node.base + "/echo", body))
    assert status == 200 and data == {"signer": alice.did}


async def test_replay_refused_also_after_restart(node: Node, alice: Identity, bob_home: Home) -> None:
    body = b"{}"
    headers = sign_request(alice.keys, "POST", node.base + "/echo", body)
    assert (await node.post("/echo", body, headers))[0] == 200
    status, data = await node.post("/echo", body, headers)
    assert status == 401 and data["error"] == "unauthorized" and "replayed" in data["detail"]
    # the nonce is persisted: a restarted node (new state connection) still refuses it
    node.ctx.state.close()
    node.ctx.state = NodeState(bob_home)
    status, data = await node.post("/echo", body, headers)
    assert status == 401 and "replayed" in data["detail"]


async def test_request_for_another_node_refused(node: Node, alice: Identity) -> None:
    body = b"{}"
    headers = sign_request(alice.keys, "POST", "http://node-a.test:7733/echo", body)
    status, data = await node.post("/echo", body, headers)
    assert status == 401 and "does not verify" in data["detail"]


@pytest.mark.parametrize("what", ["body", "method", "query"])
async def test_any_change_refused(node: Node, alice: Identity, what: str) -> None:
    body = b'{"n":1}'
    if what == "method":
        headers = sign_request(alice.keys, "PUT", node.base + "/echo", body)
    elif what == "query":
        headers = sign_request(alice.keys, "POST", node.base + "/echo?x=1", body)
    else:
        headers = sign_request(alice.keys, "POST", node.base + "/echo", body)
        body = b'{"n":2}'
    status, data = await node.post("/echo", body, headers)
    assert status == 401, data


async def test_tampered_signature_refused(node: Node, alice: Identity) -> None:
    body = b"{}"
    headers = sign_request(alice.keys, "POST", node.base + "/echo", body)
    sig = headers["Signature"]
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    status, _ = await node.post("/echo", body, {**headers, "Signature": flipped})
    assert status == 401


@pytest.mark.parametrize("offset", [-(WINDOW + 5), WINDOW + 5])
async def test_outside_the_window_refused(node: Node, alice: Identity, offset: int) -> None:
    body = b"{}"
    real = timefmt.now()
    with mock.patch("hn.proto.timefmt.now", return_value=real + offset):
        headers = sign_request(alice.keys, "POST", node.base + "/echo", body)
    status, data = await node.post("/echo", body, headers)
    assert status == 401 and "window" in data["detail"]
    # The refusal says how far off the signer's clock is, and which way.
    side = "ahead of" if offset > 0 else "behind"
    assert re.search(rf"about (\d+) s {side} this node's", data["detail"])
    assert abs(int(re.search(r"about (\d+) s", data["detail"]).group(1)) - abs(offset)) <= 2


@pytest.mark.parametrize("offset", [-(WINDOW - 30), WINDOW - 30])
async def test_inside_the_window_accepted(node: Node, alice: Identity, offset: int) -> None:
    """A peer whose clock is a few minutes off either way is still accepted (THREATS 14)."""
    body = b"{}"
    with mock.patch("hn.proto.timefmt.now", return_value=timefmt.now() + offset):
        headers = sign_request(alice.keys, "POST", node.base + "/echo", body)
    assert (await node.post("/echo", body, headers))[0] == 200


@pytest.mark.parametrize(("offset", "status"), [(WINDOW, 200), (-WINDOW, 200), (WINDOW + 1, 401),
                                               (-(WINDOW + 1), 401)])
async def test_the_window_edge_is_exact(node: Node, alice: Identity, offset: int, status: int) -> None:
    body = b"{}"
    now = float(int(timefmt.now()))  # one frozen clock for the signer and the node
    with mock.patch("hn.proto.timefmt.now", return_value=now + offset):
        headers = sign_request(alice.keys, "POST", node.base + "/echo", body)
    with mock.patch("hn.proto.timefmt.now", return_value=now):
        assert (await node.post("/echo", body, headers))[0] == status


async def test_unknown_signer_refused(node: Node, tmp_path: Path) -> None:
    stranger_home = Home(tmp_path / "stranger")
    stranger_home.ensure()
    stranger = identities.create(stranger_home, "stranger")
    body = b"{}"
    status, data = await node.post("/echo", body, sign_request(stranger.keys, "POST", node.base + "/echo", body))
    assert status == 401 and "unknown signer" in data["detail"]


async def test_key_mismatch_refused(node: Node, alice: Identity, tmp_path: Path) -> None:
    """A request that names alice but is signed by another key."""
    other_home = Home(tmp_path / "other")
    other_home.ensure()
    other = identities.create(other_home, "other")
    body = b"{}"
    headers = sign_request(other.keys, "POST", node.base + "/echo", body)
    headers["Signature-Input"] = headers["Signature-Input"].replace(other.did, alice.did)
    status, _ = await node.post("/echo", body, headers)
    assert status == 401


async def test_unsigned_and_garbage_refused(node: Node, alice: Identity) -> None:
    assert (await node.post("/echo", b"{}", {}))[0] == 401
    for headers in ({"Signature": "hn=:AAAA:", "Signature-Input": "hn=()"},
                    {"Signature": "x", "Signature-Input": 'hn=("@method");keyid="did:hn:zz"'},
                    {"Signature": "hn=:" + "A" * 5000 + ":", "Signature-Input": "((((("}):
        status, data = await node.post("/echo", b"{}", headers)
        assert status == 401 and data["error"] == "unauthorized", data


def test_headers_name_the_covered_components(alice: Identity) -> None:
    headers = sign_request(alice.keys, "GET", "http://x.test/federate/index?cursor=0", b"")
    assert set(headers) == {"Content-Digest", "Signature-Input", "Signature"}
    assert headers["Content-Digest"].startswith("sha-256=:")
    spec = headers["Signature-Input"]
    for part in ('"@method"', '"@target-uri"', '"content-digest"', "created=", 'nonce="', f'keyid="{alice.did}"',
                 'alg="ed25519"'):
        assert part in spec, spec
