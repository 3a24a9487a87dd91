"""The federation profile: config files written once, then read on every start.

`hn mcp serve --profile federation` writes config/mcp.federation.toml and
config/discover.federation.toml from the templates in profiles/federation (shipped in
the package as hn/node/templates) only when they do not exist, so an operator's edits
are never overwritten. Their values become the node's defaults; command-line options
override them for one run.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from typing import Any

from hn.errors import InputError
from hn.vault import atomic
from hn.vault.home import Home

FILES = ("mcp.federation.toml", "discover.federation.toml")
DEFAULTS = {"listen": "0.0.0.0:8733", "public_url": "", "dht_listen": "0.0.0.0:8734"}


def template(name: str) -> str:
    return resources.files("hn.node").joinpath("templates", name).read_text("utf-8")


def ensure(home: Home, values: dict[str, str]) -> list[str]:
    """Write the profile files that do not exist yet; returns the names written."""
    home.ensure()
    written = []
    fill = {**DEFAULTS, **{k: v for k, v in values.items() if v}}
    for name in FILES:
        path = home.path("config", name)
        if path.exists():
            continue
        text = template(name)
        for key, value in fill.items():
            text = text.replace("{" + key + "}", value.replace('"', ""))
        atomic.write_bytes(path, text.encode("utf-8"))
        written.append(name)
    return written


def load(home: Home) -> dict[str, Any]:
    """Flatten the profile files into serve settings (keys as in NodeContext.settings)."""
    data: dict[str, Any] = {}
    for name in FILES:
        path = home.path("config", name)
        if not path.exists():
            continue
        try:
            data[name] = tomllib.loads(path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path} is not valid TOML: {exc}") from exc
    mcp = data.get(FILES[0], {})
    disc = data.get(FILES[1], {})
    node = mcp.get("node", {})
    fed = mcp.get("federation", {})
    backup = mcp.get("backup", {})
    dht = disc.get("dht", {})
    settings: dict[str, Any] = {
        "listen": node.get("listen") or None,
        "public_url": node.get("public_url") or None,
        "tls_cert": os.environ.get("HN_TLS_CERT") or node.get("tls_cert") or None,
        "tls_key": os.environ.get("HN_TLS_KEY") or node.get("tls_key") or None,
        "max_connections": node.get("max_connections"),
        "sync_interval": fed.get("sync_interval"),
        "mirror": fed.get("mirror"),
        "backup_keep_last": backup.get("keep_last"),
        "dht_listen": dht.get("listen") or None,
        "bootstrap": list(dht.get("bootstrap") or []),
    }
    return {k: v for k, v in settings.items() if v is not None and v != []}
