"""The relays a peer's presence names are used only when their URL is a node's address."""

from __future__ import annotations

from hn.federation.cache import relays_of


def test_relays_with_urls_no_node_has_are_skipped() -> None:
    good = {"did": "did:hn:" + "a" * 32, "url": "https://relay.example.net:8733"}
    odd = [{"did": "did:hn:" + "b" * 32, "url": url}
           for url in ("http:///x", "http://[::1", "http://host /", "ftp://relay.example.net", "http://u:p@host")]
    assert relays_of({"relays": [good, *odd, {"did": 1, "url": "https://x"}, "junk"]}) == [good]
    assert relays_of({"relays": "junk"}) == [] and relays_of(None) == []


def test_a_node_url_s_scheme_is_case_insensitive() -> None:
    from hn.federation.roster import check_node_url

    assert check_node_url("HTTPS://relay.example.net:8733/", "peer URL") == "https://relay.example.net:8733"
