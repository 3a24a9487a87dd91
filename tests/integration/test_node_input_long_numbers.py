"""An integer too long for Python to convert (over 4,300 digits) anywhere in JSON a node
or the CLI parses is a malformed document: 400 on the node, one clear line in the CLI,
never a 500 or an "internal error"."""

from __future__ import annotations

from pathlib import Path

import pytest

from hn.node.httpsig import sign_request
from tests.integration.test_node_input_http import Pair, fetch, pair  # noqa: F401  (pair: a fixture)
from tests.support import run_hn, run_json

pytestmark = pytest.mark.timeout(120)
LONG = "1" + "0" * 5000


@pytest.mark.parametrize(("route", "body"), [
    ("/relay/BOB/presence", '{"presence":{"seq":' + LONG + "}}"),
    ("/backup", '{"type":"backup@1","size":' + LONG + "}"),
])
async def test_a_long_integer_in_a_posted_body_is_a_400(pair: Pair, route: str, body: str) -> None:  # noqa: F811
    target = pair.url + route.replace("BOB", pair.bob.did)
    data = body.replace("BOB", pair.bob.did).encode()
    status, _, answer = await fetch("POST", target, data, sign_request(pair.bob.keys, "POST", target, data))
    assert status == 400 and answer["error"] == "malformed", (status, answer)
    assert "5001 digits" not in answer["detail"] and "digits" in answer["detail"], answer


def test_a_long_integer_in_a_file_the_cli_reads_is_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "vault"
    run_json(home, "id", "create", "alice")
    bad = tmp_path / "identity.json"
    bad.write_text('{"type":"identity@1","seq":' + LONG + "}")
    proc = run_hn(home, "id", "import", str(bad), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "internal error" not in lines[0] and "digits" in lines[0], lines
