"""DNS TXT discovery against a small DNS server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.rrset

from tests.integration.test_discover_e2e import make_vault
from tests.support import ServedNode, free_port, run_hn, run_json


def serve_txt(records: dict[str, str]) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)

    def loop() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            value = records.get(question.name.to_text())
            if value is not None and question.rdtype == dns.rdatatype.TXT:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", f'"{value}"'))
            else:
                reply.set_rcode(3)  # NXDOMAIN
            sock.sendto(reply.to_wire(), addr)

    threading.Thread(target=loop, daemon=True).start()
    return sock, sock.getsockname()[1]


def test_dns_txt_publish_and_resolve(tmp_path: Path) -> None:
    home, did = make_vault(tmp_path, "alice")
    port = free_port()
    node = ServedNode(home, ["--listen", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}", "--no-dht"])
    try:
        # A DHT publish through a node that runs without one says so.
        refused = run_hn(home, "discover", "publish", check=False)
        assert refused.returncode == 1 and "runs without a DHT" in refused.stderr, refused.stderr
        record = run_json(home, "discover", "publish", "--dns-txt", "--dns-name", "alice.test")
        txt = record["dns_txt"]
        assert txt["name"] == "_hn.alice.test"
        assert txt["line"] == f'_hn.alice.test TXT "{did}=http://127.0.0.1:{port}"'
        sock, dns_port = serve_txt({"_hn.alice.test.": txt["value"], "_hn.wrong.test.": f"{did}=http://127.0.0.1:9"})
        try:
            reader = tmp_path / "reader"
            run_json(reader, "id", "create", "reader")
            got = run_json(reader, "discover", "resolve", did, "--dns-only", "--dns-name", "alice.test",
                           "--dns-server", f"127.0.0.1:{dns_port}")
            assert got["source"] == "dns" and got["presence"]["did"] == did
            missing = run_hn(reader, "discover", "resolve", did, "--dns-only", "--dns-name", "nobody.test",
                             "--dns-server", f"127.0.0.1:{dns_port}", check=False)
            assert missing.returncode == 1 and "error:" in missing.stderr
        finally:
            sock.close()
    finally:
        node.stop()
