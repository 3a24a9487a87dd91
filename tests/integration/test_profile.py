"""The federation profile, TLS with certificate reload on SIGHUP, /metrics, deployment files."""

from __future__ import annotations

import configparser
import signal
import ssl
import time
import tomllib
import urllib.request
from pathlib import Path

import trustme
import yaml

from hn.smoke.harness import Harness

ROOT = Path(__file__).resolve().parents[2]


def test_profile_writes_config_once_and_keeps_edits(harness: Harness) -> None:
    h = harness
    nas = h.add_peer("nas")
    h.hn_json(nas, "id", "create", "nas")
    ready = h.start_node(nas, "--profile", "federation", dht=False)
    mcp = nas.home / "config" / "mcp.federation.toml"
    disc = nas.home / "config" / "discover.federation.toml"
    assert mcp.exists() and disc.exists()
    conf = tomllib.loads(mcp.read_text())
    assert conf["node"]["listen"] == f"127.0.0.1:{nas.http_port}"
    assert conf["node"]["public_url"] == nas.url
    assert conf["federation"]["sync_interval"] == 300 and conf["federation"]["mode"] == "friends"
    assert conf["backup"]["keep_last"] == 7 and conf["trust"]["exposure"] == "deny"
    assert "bootstrap" in tomllib.loads(disc.read_text())["dht"]
    assert ready["base_url"] == nas.url
    assert conf["node"]["max_connections"] == 512 and ready["max_connections"] == 512
    h.stop_node(nas)
    edited = mcp.read_text().replace("sync_interval = 300", "sync_interval = 120").replace(
        "max_connections = 512", "max_connections = 40")
    mcp.write_text(edited)
    again = h.start_node(nas, "--profile", "federation", dht=False)
    assert mcp.read_text() == edited, "the profile overwrote the operator's edit"
    assert again["max_connections"] == 40
    metrics = urllib.request.urlopen(nas.url + "/metrics").read().decode()
    for name in ("hn_http_requests_total", "hn_federation_peers", "hn_federation_syncs", "hn_relay_entries",
                 "hn_backup_bytes", "hn_connections_open", "hn_connections_refused_total"):
        assert name in metrics, name
    assert 'route="/health"' not in metrics or "hn_http_requests_total" in metrics


def test_tls_and_certificate_reload_on_sighup(harness: Harness, tmp_path: Path) -> None:
    h = harness
    ca = trustme.CA()
    first = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first.private_key_and_cert_chain_pem.write_to_path(str(cert))
    first.private_key_pem.write_to_path(str(key))
    node = h.add_peer("tls")
    h.hn_json(node, "id", "create", "tls")
    ready = h.start_node(node, "--profile", "federation", dht=False, public_url=False,
                         env={"HN_TLS_CERT": str(cert), "HN_TLS_KEY": str(key)})
    assert ready["base_url"].startswith("https://") and ready["tls"] is True
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://127.0.0.1:{node.http_port}"

    def serial() -> int:
        with urllib.request.urlopen(url + "/health", context=context) as resp:
            assert resp.status == 200
        conn = context.wrap_socket(__import__("socket").create_connection(("127.0.0.1", node.http_port)),
                                   server_hostname="127.0.0.1")
        der = conn.getpeercert(binary_form=True)
        conn.close()
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number

    before = serial()
    second = ca.issue_cert("127.0.0.1")
    second.private_key_and_cert_chain_pem.write_to_path(str(cert))
    second.private_key_pem.write_to_path(str(key))
    assert node.proc is not None
    node.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = serial()
    assert after != before, "SIGHUP did not reload the certificate"
    assert node.proc.poll() is None


def test_deployment_files_parse() -> None:
    dockerfile = (ROOT / "profiles" / "docker" / "Dockerfile").read_text()
    lines = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM ")
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")
    assert any(ln.startswith("HEALTHCHECK") for ln in lines) and "/health" in dockerfile
    assert '"--profile", "federation"' in dockerfile and "VOLUME" in dockerfile
    compose = yaml.safe_load((ROOT / "profiles" / "docker" / "compose.yaml").read_text())
    service = compose["services"]["hn"]
    assert service["environment"]["HN_HOME"] == "/data" and "federation" in service["command"]
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "profiles" / "systemd" / "hn-node.service")
    assert unit["Service"]["User"] == "hn" and "--profile federation" in unit["Service"]["ExecStart"]
    assert unit["Service"]["NoNewPrivileges"] == "yes" and unit["Service"]["ProtectSystem"] == "strict"
    assert "kill -HUP" in unit["Service"]["ExecReload"]
    for name in ("mcp.federation.toml", "discover.federation.toml"):
        text = (ROOT / "profiles" / "federation" / name).read_text()
        tomllib.loads(text.replace("{listen}", "x").replace("{public_url}", "x").replace("{dht_listen}", "x"))


def test_profile_node_publishes_its_hint_on_start(harness: Harness) -> None:
    h = harness
    nas, laptop = h.add_people("nas", "laptop")
    ready = h.start_node(nas, "--profile", "federation")
    assert ready["dht"] == nas.dht
    h.start_node(laptop, bootstrap=[nas.dht])
    deadline = time.monotonic() + 20
    while True:
        proc = h.hn(laptop, "discover", "resolve", nas.did, "--dht-only", "--json", check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stderr
    import json

    resolved = json.loads(proc.stdout)
    assert resolved["source"] == "dht" and resolved["presence"]["did"] == nas.did
    metrics = urllib.request.urlopen(nas.url + "/metrics").read().decode()
    assert "hn_dht_records 1.0" in metrics or "hn_dht_records 2.0" in metrics, metrics
    for name in ("hn_dht_contacts", "hn_dht_lookups", 'hn_dht_rpcs{kind="sent"}'):
        assert name in metrics, name
