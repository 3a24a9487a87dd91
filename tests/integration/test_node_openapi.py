"""spec/openapi.json describes exactly the routes the node registers.

A capability that adds a route must add it to spec/openapi.json (with `x-hn-plugin`
naming its module); this test names any route that is missing on either side.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hn.node.app import build_context, create_app
from hn.vault import identities
from hn.vault.home import Home

SPEC = Path(__file__).resolve().parents[2] / "spec" / "openapi.json"
METHODS = ("get", "post", "put", "delete", "patch")


def load_spec() -> dict[str, Any]:
    return json.loads(SPEC.read_text("utf-8"))  # type: ignore[no-any-return]


async def registered(tmp_path: Path) -> set[tuple[str, str]]:
    home = Home(tmp_path / "vault")
    home.ensure()
    identities.create(home, "alice")
    ctx = build_context(home, {"listen": "127.0.0.1:0", "no_dht": True, "bootstrap": []})
    try:
        app = await create_app(ctx)
        out = set()
        for route in app.router.routes():
            if route.method == "HEAD" or route.resource is None:
                continue
            out.add((route.method.lower(), route.resource.canonical))
        return out
    finally:
        for fn in ctx.cleanup:
            await fn()
        ctx.state.close()


def described() -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in load_spec()["paths"].items()
            for method, op in item.items() if method in METHODS}


async def test_every_registered_route_is_described(tmp_path: Path) -> None:
    routes = await registered(tmp_path)
    missing = sorted(f"{m.upper()} {p}" for m, p in routes if (m, p) not in described())
    assert not missing, (
        f"routes registered by the node but missing from spec/openapi.json: {', '.join(missing)} "
        "- describe each one there (with x-hn-plugin naming the module that registers it)")


async def test_every_described_route_is_registered(tmp_path: Path) -> None:
    routes = await registered(tmp_path)
    stale = []
    for (method, path), op in described().items():
        plugin = op["x-hn-plugin"]
        if importlib.util.find_spec(plugin) is None:
            continue  # that capability is not installed in this tree yet
        if (method, path) not in routes:
            stale.append(f"{method.upper()} {path} ({plugin})")
    assert not stale, f"spec/openapi.json describes routes the node does not register: {', '.join(stale)}"


@pytest.mark.parametrize("key", sorted(f"{m} {p}" for m, p in described()))
def test_operation_is_well_formed(key: str) -> None:
    method, path = key.split(" ", 1)
    spec = load_spec()
    op = spec["paths"][path][method]
    assert op.get("summary") and op.get("x-hn-plugin", "").startswith("hn.")
    assert op["responses"], "an operation needs responses"
    for code in op["responses"]:
        assert re.fullmatch(r"[1-5][0-9][0-9]", code), code
        # A 500 is a bug, never a documented answer; 507 says the node's own storage failed.
        assert not code.startswith("5") or code == "507", code
    declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
    assert declared == set(re.findall(r"{(\w+)}", path)), f"path parameters of {key}"
    for ref in re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(op)):
        assert ref[1] in spec["components"][ref[0]], ref


def test_spec_header() -> None:
    spec = load_spec()
    assert spec["openapi"].startswith("3.")
    assert "httpSignature" in spec["components"]["securitySchemes"]
