"""DHT settings: command line, then config/dht.toml, then defaults; host names resolved here."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from hn.errors import InputError
from hn.vault.home import Home

DEFAULT_PORT = 7734
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
CONFIG_FILE = "dht.toml"


@dataclass(frozen=True)
class DhtConfig:
    ksize: int = 20
    alpha: int = 3
    # Distinct valid hints a resolve collects before it stops asking further holders.
    quorum: int = 5
    rpc_initial: float = 0.5
    rpc_floor: float = 0.05
    rpc_ceiling: float = 2.0
    dead_ttl: float = 60.0
    lookup_deadline: float = 4.0
    per_ip_per_bucket: int = 2
    request_rate: float = 200.0
    request_burst: float = 400.0
    store_rate: float = 10.0
    store_burst: float = 40.0
    max_records: int = 10_000
    saved_contacts: int = 64
    maintenance_interval: float = 60.0
    refresh_after: float = 900.0


def parse_hostport(value: str, what: str = "address") -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"{what} must be HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_peer(value: str, what: str = "address") -> tuple[str, int]:
    """HOST:PORT of a peer to send to: port 0, which a listener may take, names no peer."""
    host, port = parse_hostport(value, what)
    if port == 0:
        raise InputError(f"{what} must be HOST:PORT with a port from 1 to 65535, not {value!r}")
    return host, port


def resolve_addr(value: str, what: str = "bootstrap") -> tuple[str, int]:
    """HOST:PORT to (IP, port): kademlia only speaks to IP addresses, names are ours to resolve."""
    host, port = parse_hostport(value, what)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise InputError(f"{what} {value!r}: cannot resolve {host!r}: {exc}") from exc
    v4 = [i for i in infos if i[0] == socket.AF_INET]
    chosen = (v4 or infos)[0]
    return str(chosen[4][0]), int(chosen[4][1])


def file_settings(home: Home) -> dict[str, Any]:
    """[dht] of config/dht.toml, else of the federation profile's discover file."""
    for name in (CONFIG_FILE, "discover.federation.toml"):
        data = home.read_toml(name)
        if data:
            section = data.get("dht", {})
            dns = data.get("dns", {})
            out = dict(section) if isinstance(section, dict) else {}
            if isinstance(dns, dict) and dns.get("txt_name"):
                out["txt_name"] = dns["txt_name"]
            return out
    return {}


def listen_address(home: Home, settings: dict[str, Any]) -> str:
    return str(settings.get("dht_listen") or file_settings(home).get("listen") or DEFAULT_LISTEN)


def bootstrap_list(home: Home, override: list[str] | None) -> list[str]:
    """Command-line bootstrap peers replace the configured ones."""
    if override:
        return list(override)
    configured = file_settings(home).get("bootstrap") or []
    if not isinstance(configured, list) or not all(isinstance(x, str) for x in configured):
        raise InputError("config/dht.toml: bootstrap must be a list of \"host:port\" strings")
    return list(configured)


def republish_fraction(home: Home) -> float:
    value = file_settings(home).get("republish_fraction", 0.75)
    if not isinstance(value, (int, float)) or not 0.1 <= float(value) <= 0.95:
        raise InputError("config/dht.toml: republish_fraction must be between 0.1 and 0.95")
    return float(value)


def txt_name(home: Home) -> str | None:
    value = file_settings(home).get("txt_name")
    return value if isinstance(value, str) and value else None
