"""End to end: `hn mcp serve` nodes with DHT, `hn discover` through the node and as a client."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServedNode, free_port, run_hn, run_json


def make_vault(root: Path, name: str) -> tuple[Path, str]:
    home = root / name
    did = run_json(home, "id", "create", name)["did"]
    return home, did


def udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, tuple[ServedNode, str]]]:
    started: dict[str, tuple[ServedNode, str]] = {}
    try:
        boot = None
        for name in ("alice", "bob", "carol"):
            home, did = make_vault(tmp_path, name)
            port, dport = free_port(), udp_port()
            args = ["--listen", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}",
                    "--dht-listen", f"127.0.0.1:{dport}"]
            if boot:
                args += ["--bootstrap", boot]
            node = ServedNode(home, args)
            assert node.ready["dht"] == f"127.0.0.1:{dport}"
            boot = boot or node.ready["dht"]
            started[name] = (node, did)
        yield started
    finally:
        for node, _ in started.values():
            node.stop()


def test_publish_and_resolve_through_running_nodes(nodes: dict[str, tuple[ServedNode, str]], tmp_path: Path) -> None:
    alice, alice_did = nodes["alice"]
    bob, bob_did = nodes["bob"]
    carol, _ = nodes["carol"]
    token = alice.home / "run" / "control.token"
    assert token.stat().st_mode & 0o777 == 0o600
    published = run_json(alice.home, "discover", "publish", "--dht")
    assert published["via"] == "node" and published["hint"]["did"] == alice_did
    assert published["dht"]["acks"] >= 1
    got = run_json(carol.home, "discover", "resolve", alice_did)
    assert got["source"] == "dht" and got["presence"]["did"] == alice_did
    assert got["presence"]["url"] == alice.ready["base_url"]
    hint_only = run_json(bob.home, "discover", "resolve", alice_did, "--hint-only")
    assert hint_only["presence"] is None and hint_only["hint"]["did"] == alice_did

    # A vault with no node running uses a short-lived client-mode DHT node.
    stranger = tmp_path / "stranger"
    run_json(stranger, "id", "create", "stranger")
    boot = alice.ready["dht"]
    via_client = run_json(stranger, "discover", "resolve", alice_did, "--bootstrap", boot)
    assert via_client["presence"]["did"] == alice_did
    listed = run_json(stranger, "discover", "cache", "list")
    assert [e["did"] for e in listed["entries"]] == [alice_did] and listed["entries"][0]["ok"]

    # The node is stopped: the cache answers, and says so.
    alice.stop()
    fallback = run_json(stranger, "discover", "resolve", alice_did, "--bootstrap", bob.ready["dht"],
                        "--cache-fallback")
    assert fallback["source"] in ("dht", "cache")
    if fallback["source"] == "dht":
        # the hint is still in the DHT but the presence URL is gone: only the cache could have answered
        raise AssertionError("resolve cannot have fetched a presence from a stopped node")
    assert fallback["fallback"] is True and fallback["presence"]["did"] == alice_did
    failed = run_hn(stranger, "discover", "resolve", bob_did, "--bootstrap", bob.ready["dht"], check=False)
    assert failed.returncode != 0 and failed.stderr.startswith("error:")


def test_control_api_refuses_requests_without_the_token(nodes: dict[str, tuple[ServedNode, str]]) -> None:
    import urllib.error
    import urllib.request

    alice, _ = nodes["alice"]
    base = alice.ready["base_url"]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        request = urllib.request.Request(base + "/local/dht/status", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 403
        assert json.loads(info.value.read())["error"] == "forbidden"
    token = (alice.home / "run" / "control.token").read_text()
    request = urllib.request.Request(base + "/local/dht/status", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        status = json.loads(resp.read())
    assert status["listen"] == alice.ready["dht"] and status["contacts"] >= 1
    # Fields of the wrong type are a 400 with a JSON body, never a 500.
    did = run_json(alice.home, "id", "show")["did"]
    for field, value in (("dns_name", ["x"]), ("dns_server", 5)):
        body = json.dumps({"did": did, "mode": "dns", field: value}).encode()
        request = urllib.request.Request(base + "/local/dht/resolve", data=body, method="POST",
                                         headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 400, field
        answer = json.loads(info.value.read())
        assert answer["error"] == "bad_input" and field in answer["detail"], answer


def test_skew_refusals_show_in_status_and_metrics(nodes: dict[str, tuple[ServedNode, str]], tmp_path: Path) -> None:
    """spec/dht_hint@1.md: a refusal for clock skew is counted in the node's status."""
    import asyncio
    import urllib.request

    from hn.proto import timefmt
    from hn.proto.dht_hint import dht_key
    from tests.fault.test_dht_hostile import raw_peer
    from tests.integration.test_dht_network import make_hint
    from tests.support import make_person

    alice, _ = nodes["alice"]
    _, dora = make_person(tmp_path, "dora")
    before = run_json(alice.home, "status")["dht"]
    assert before["listen"] == alice.ready["dht"] and before["skew_refused"] == 0

    async def store_from_the_future() -> object:
        peer = await raw_peer()
        try:
            host, port = alice.ready["dht"].rsplit(":", 1)
            ahead = make_hint(dora, 1, issued=timefmt.now() + 3 * 3600)
            return await peer.ask((host, int(port)), "store", peer.node_id, dht_key(dora.did), ahead)
        finally:
            assert peer.transport is not None
            peer.transport.close()

    assert asyncio.run(store_from_the_future()) is False
    assert run_json(alice.home, "status")["dht"]["skew_refused"] == 1
    assert "1 refused for clock skew" in run_hn(alice.home, "status").stdout
    with urllib.request.urlopen(alice.ready["base_url"] + "/metrics", timeout=5) as resp:
        assert "hn_dht_skew_refused 1.0" in resp.read().decode()
