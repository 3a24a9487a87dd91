"""The node over real sockets: `hn mcp serve` start and stop, JSON errors, body and header
limits, read deadlines (THREATS 15, 16) and friends-only mode."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hn.errors import InputError
from hn.federation import roster
from hn.node import http as node_http
from hn.node.app import Node
from hn.node.httpsig import sign_request
from hn.proto.canonical import canonical, loads_canonical
from hn.vault import identities, policy, store
from hn.vault.home import Home
from hn.vault.identities import Identity
from tests.support import free_port, hn_env, run_json


def start_serve(home: Path, port: int, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hn", "mcp", "serve", "--listen", f"127.0.0.1:{port}", "--no-dht", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=hn_env(home))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("MCP_READY "):
        proc.kill()
        raise AssertionError(f"no MCP_READY line: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line[len("MCP_READY "):])


def get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_ready_routes_and_clean_stop(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "vault"
    me = run_json(home, "id", "create", "alice")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    proc, ready = start_serve(home, port, "--public-url", public, "--log-json", "--sync-interval", "60")
    try:
        assert ready["did"] == me["did"] and ready["listen"] == f"127.0.0.1:{port}"
        assert ready["base_url"] == public and ready["presence_url"] == public + "/.well-known/hn/presence"
        assert "dht" in ready and ready["dht"] is None
        running = json.loads((home / "run" / "node.json").read_text())
        assert running["pid"] == proc.pid and running["base_url"] == public and running["started_at"]
        status, body = get(public + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok" and json.loads(body)["version"]
        status, body = get(public + "/.well-known/hn/presence")
        presence = loads_canonical(body)  # served as its exact canonical bytes
        assert status == 200 and presence["url"] == public and presence["did"] == me["did"]
        status, body = get(public + "/.well-known/hn/identity")
        assert status == 200 and loads_canonical(body)["did"] == me["did"]
        state = run_json(home, "status")
        assert state["node"]["running"] is True and state["node"]["base_url"] == public
        started = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert time.monotonic() - started < 5, "the node must stop within 5 s"
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        assert not (home / "run" / "node.json").exists()
        assert proc.stdout is not None and proc.stdout.read() == "", "stdout carries only the MCP_READY line"
        assert run_json(home, "status")["node"]["running"] is False
        logs = [json.loads(line) for line in (proc.stderr.read() if proc.stderr else "").splitlines() if line]
        assert any(entry["event"] == "node.ready" for entry in logs)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_bad_listen(tmp_path: Path) -> None:
    from tests.support import run_hn

    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    result = run_hn(home, "mcp", "serve", "--listen", "nonsense", "--no-dht", check=False, timeout=30)
    assert result.returncode != 0 and "error:" in result.stderr and "Traceback" not in result.stderr


# -- in-process nodes: real aiohttp servers on loopback --------------------------------------


class Running:
    def __init__(self, home: Home, node: Node, info: dict[str, Any]) -> None:
        self.home, self.node, self.info = home, node, info
        self.url = info["base_url"]
        self.port = int(info["listen"].rsplit(":", 1)[1])


@pytest.fixture
async def running(home: Home, alice: Identity, tmp_path: Path) -> AsyncIterator[Running]:
    note = tmp_path / "note.txt"
    note.write_text("published\n")
    store.add_files(home, alice.keys, [note], True)
    port = free_port()
    node = Node(home, {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}", "no_dht": True,
                       "bootstrap": [], "keepalive_timeout": 2, "sync_interval": 3600})
    info = await node.start()
    try:
        yield Running(home, node, info)
    finally:
        await node.stop()


def make_friend(tmp_path: Path, running: Running, name: str, on_roster: bool = True) -> Identity:
    other = Home(tmp_path / name)
    other.ensure()
    ident = identities.create(other, name)
    identities.import_contact(running.home, canonical(ident.doc))
    if on_roster:
        roster.add(running.home, ident.did, f"http://127.0.0.1:{free_port()}")
    return ident


async def fetch(method: str, url: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, data=data, headers=headers) as resp:
            body = await resp.read()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, body


async def test_errors_are_json(running: Running) -> None:
    status, body = await fetch("GET", running.url + "/no/such/route")
    assert status == 404 and body["error"] == "not_found"
    status, body = await fetch("GET", running.url + "/federate/index?cursor=../../x")
    assert status == 400 and body["error"] == "malformed" and "cursor" in body["detail"]
    status, body = await fetch("POST", running.url + "/health")
    assert status == 405 and set(body) == {"error", "detail"}
    status, body = await fetch("GET", running.url + "/artifact/doc/" + "0" * 64)
    assert status == 404 and body["error"] == "not_found"
    status, body = await fetch("GET", running.url + "/artifact/../../etc/passwd")
    assert status == 404


async def test_body_caps(running: Running) -> None:
    status, body = await fetch("POST", running.url + "/federate/notify", b"x" * (1024 * 1024 + 1))
    assert status == 413 and body["error"] == "too_large"
    status, body = await fetch("POST", running.url + "/federate/notify", b"x" * 5000)
    assert status == 413
    status, body = await fetch("POST", running.url + "/federate/notify", b"{}")
    assert status == 401 and body["error"] == "unauthorized"


async def test_deeply_nested_json_is_a_400(running: Running, tmp_path: Path) -> None:
    bob = make_friend(tmp_path, running, "bob")
    target = running.url + "/federate/notify"
    for body in (b"[" * 2000 + b"]" * 2000, b'{"a":1,"a":2}', b"\xff\xfe", b"NaN"):
        headers = sign_request(bob.keys, "POST", target, body)
        status, data = await fetch("POST", target, body, headers)
        assert status == 400 and data["error"] == "malformed", (body[:20], data)
    status, _ = await fetch("GET", running.url + "/health")
    assert status == 200


async def test_connections_past_the_cap_get_a_json_503(home: Home, alice: Identity) -> None:
    port = free_port()
    node = Node(home, {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}", "no_dht": True,
                       "bootstrap": [], "keepalive_timeout": 30, "sync_interval": 3600, "max_connections": 3})
    info = await node.start()
    idle = []
    # A refusal is quiet: no task of aiohttp's fails behind it (reported when collected).
    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    try:
        assert info["max_connections"] == 3
        for _ in range(3):  # idle sockets that never send a byte hold every slot
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(reader.read(), timeout=5)  # answered and closed at once
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and json.loads(body)["error"] == "busy"
        for _, w in idle:
            w.close()
        idle.clear()
        # Slots free again: requests are served, and the refusal was counted.
        for _ in range(20):
            try:
                status, _ = await fetch("GET", info["base_url"] + "/health")
            except aiohttp.ClientError:
                status = 0
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        async with aiohttp.ClientSession() as session:
            async with session.get(info["base_url"] + "/metrics") as resp:
                metrics = await resp.text()
        refused = re.search(r"^hn_connections_refused_total (\S+)$", metrics, re.M)
        assert refused is not None and float(refused.group(1)) >= 1
        gc.collect()
        await asyncio.sleep(0)
        assert failures == []
    finally:
        loop.set_exception_handler(None)
        for _, w in idle:
            w.close()
        await node.stop()


async def test_a_tls_handshake_that_never_comes_is_cut_off(home: Home, alice: Identity, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    import trustme

    from hn.node import app as node_app

    monkeypatch.setattr(node_app, "TLS_HANDSHAKE", 0.5)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    port = free_port()
    node = Node(home, {"listen": f"127.0.0.1:{port}", "public_url": f"https://127.0.0.1:{port}", "no_dht": True,
                       "bootstrap": [], "tls_cert": str(cert), "tls_key": str(key), "sync_interval": 3600})
    await node.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # TCP only, never a ClientHello
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        assert asyncio.get_running_loop().time() - started < 9  # the handshake bound, not a read timeout
        writer.close()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/health", ssl=context) as resp:
                assert resp.status == 200
    finally:
        await node.stop()


async def test_a_port_in_use_is_a_clear_error(home: Home, alice: Identity) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = Node(home, {"listen": f"127.0.0.1:{port}", "no_dht": True, "bootstrap": []})
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}: address already in use"):
            await node.start()
        await node.stop()


@pytest.mark.parametrize("value", [0, -5, "many", 2.5])
async def test_a_bad_connection_cap_is_a_clear_error(home: Home, alice: Identity, value: object) -> None:
    port = free_port()
    node = Node(home, {"listen": f"127.0.0.1:{port}", "no_dht": True, "bootstrap": [], "max_connections": value})
    with pytest.raises(InputError, match="max_connections"):
        await node.start()
    await node.stop()


async def test_oversized_headers_refused(running: Running) -> None:
    status, body = await fetch("GET", running.url + "/health", headers={"X-Big": "a" * 20000})
    assert 400 <= status < 500 and body["error"] == "too_large", body
    many = {f"X-H{i}": "v" for i in range(200)}
    status, body = await fetch("GET", running.url + "/health", headers=many)
    assert 400 <= status < 500 and body["error"] == "too_large", body
    assert (await fetch("GET", running.url + "/health"))[0] == 200


@pytest.mark.parametrize("raw", [
    b"NOT A REQUEST LINE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /federate/notify HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n",
])
async def test_requests_the_parser_refuses_get_json_errors(running: Running, raw: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, head
    assert b"application/json" in head.lower(), head
    assert json.loads(body)["error"] == "malformed" and json.loads(body)["detail"]
    assert (await fetch("GET", running.url + "/health"))[0] == 200


async def test_slowloris_does_not_starve_the_node(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_http, "BODY_GRACE", 2.0)
    writers = []
    for i in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        if i % 4 == 0:  # a body that trickles in after complete headers
            writer.write(b"POST /federate/notify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        else:  # headers that never end
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        writers.append((reader, writer))

    async def trickle() -> None:
        for _ in range(6):
            for _, writer in writers:
                if not writer.is_closing():
                    writer.write(b"a")
            await asyncio.sleep(1)

    dripping = asyncio.create_task(trickle())
    try:
        # normal requests keep being served while 200 sockets trickle
        for _ in range(10):
            status, _ = await fetch("GET", running.url + "/health")
            assert status == 200
            await asyncio.sleep(0.2)
        await dripping
        # the deadlines cut every trickling connection off (keep-alive 2 s, body grace 2 s)
        closed = 0
        stuck = []
        for n, (reader, _) in enumerate(writers):
            try:
                data = await asyncio.wait_for(reader.read(), timeout=5)
            except TimeoutError:
                stuck.append(n)
                continue  # still open: counted as a failure below
            except ConnectionError:
                data = b""  # reset by the node: closed too
            closed += 1
            if data:
                assert b"408" in data.split(b"\r\n", 1)[0], data[:80]
        assert closed == len(writers), f"connections left open: {stuck}"
    finally:
        dripping.cancel()
        for _, writer in writers:
            writer.close()


async def test_friends_only_mode(running: Running, tmp_path: Path) -> None:
    bob = make_friend(tmp_path, running, "bob")
    eve = make_friend(tmp_path, running, "eve", on_roster=False)
    doc_id = store.load_catalog(running.home).index_entries()[0]["id"]
    urls = [running.url + "/federate/index?cursor=0", running.url + f"/artifact/doc/{doc_id}"]
    for url in urls:
        assert (await fetch("GET", url))[0] == 200  # public by default
    policy.set_policy(running.home, "federation.mode", "friends")
    for url in urls:
        status, body = await fetch("GET", url)
        assert status == 401 and "friends only" in body["detail"]
        status, body = await fetch("GET", url, headers=sign_request(eve.keys, "GET", url, b""))
        assert status == 403 and body["error"] == "forbidden"
        status, _ = await fetch("GET", url, headers=sign_request(bob.keys, "GET", url, b""))
        assert status == 200
    # health, presence and identity stay public so friends can find and pin the node
    for path in ("/health", "/.well-known/hn/presence", "/.well-known/hn/identity"):
        assert (await fetch("GET", running.url + path))[0] == 200


async def test_index_etag_304(running: Running, alice: Identity, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(running.url + "/federate/index?cursor=0") as resp:
            etag = resp.headers["ETag"]
            assert resp.status == 200
        async with session.get(running.url + "/federate/index?cursor=0", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304 and await resp.read() == b""
        other = tmp_path / "new.txt"
        other.write_text("new\n")
        store.add_files(running.home, alice.keys, [other], True)
        async with session.get(running.url + "/federate/index?cursor=0", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 200 and resp.headers["ETag"] != etag
