"""spec/openapi.json describes exactly the routes the node registers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hn.node.app import build_context, create_app
from hn.vault import identities
from hn.vault.home import Home

SPEC = Path(__file__).resolve().parents[2] / "spec" / "openapi.json"


def normalise(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)


async def test_openapi_matches_registered_routes(tmp_path: Path) -> None:
    home = Home(tmp_path / "v")
    home.ensure()
    identities.create(home, "node")
    ctx = build_context(home, {"listen": "127.0.0.1:0", "no_dht": True, "bootstrap": []})
    app = await create_app(ctx)
    registered = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        registered.add((route.method.lower(), normalise(path)))
    spec = json.loads(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    described = {(method, path) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}
    missing = registered - described
    extra = described - registered
    assert not missing, f"routes missing from spec/openapi.json: {sorted(missing)}"
    assert not extra, f"spec/openapi.json describes routes the node does not register: {sorted(extra)}"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") and op.get("responses"), f"{method.upper()} {path} lacks summary/responses"
    ctx.state.close()
