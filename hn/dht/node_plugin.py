"""The DHT inside `hn mcp serve`: a UDP node, our hint kept published, a local control API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from aiohttp import web

from hn.dht import config as dht_config
from hn.dht import control, service
from hn.dht.node import DhtNode
from hn.dht.resolve import resolve
from hn.errors import Forbidden, HnError, InputError, MalformedDocument
from hn.node.context import NodeContext
from hn.node.http import read_body
from hn.proto.canonical import loads_canonical, loads_strict
from hn.vault import identities

log = logging.getLogger("hn.dht")
NODE_KEY: web.AppKey[DhtNode] = web.AppKey("hn_dht")
PRESENCE_POLL = 5.0
JOIN_RETRY = (2.0, 60.0)


async def setup(ctx: NodeContext) -> None:
    if ctx.settings.get("no_dht"):
        ctx.ready_info["dht"] = None
        return
    home = ctx.home
    explicit = ctx.settings.get("dht_listen") or dht_config.file_settings(home).get("listen")
    host, port = dht_config.parse_hostport(dht_config.listen_address(home, ctx.settings), "--dht-listen")
    node = DhtNode(dht_config.DhtConfig(), state_path=home.path("cache", "dht", "state.json"))
    try:
        address = await node.listen(port, host)
    except HnError:
        if explicit:
            raise
        # The default port is taken (another node on this machine): any free port will do.
        address = await node.listen(0, host)
        log.warning("dht.port_busy", extra={"hn": {"default": port, "listen": f"{address[0]}:{address[1]}"}})
    ctx.ready_info["dht"] = f"{address[0]}:{address[1]}"
    ctx.extras["dht"] = node
    ctx.app[NODE_KEY] = node
    token = control.issue_token(home)
    ctx.extras["control_token"] = token
    fraction = dht_config.republish_fraction(home)
    bootstrap = dht_config.bootstrap_list(home, ctx.settings.get("bootstrap") or None)

    def guard(request: web.Request) -> None:
        if not control.authorised(request.remote, request.headers.get("Authorization"), token):
            raise Forbidden("the local control API answers only this vault's own commands on loopback")

    async def body_of(request: web.Request) -> dict[str, Any]:
        guard(request)
        data = loads_strict(await read_body(request, 64 * 1024) or b"{}")
        if not isinstance(data, dict):
            raise MalformedDocument("expected a JSON object")
        return data

    async def publish_route(request: web.Request) -> web.Response:
        data = await body_of(request)
        me = identities.load(home, ctx.identity.alias)
        out: dict[str, Any] = {"via": "node"}
        if data.get("dht", True):
            raw = service.sign_own_hint(home, me)
            out["hint"] = loads_canonical(raw)
            out["dht"] = (await node.publish(raw)).as_dict()
        if data.get("dns_txt"):
            name = data.get("dns_name")
            out["dns_txt"] = service.dns_record(home, me, name if isinstance(name, str) else None)
        return web.json_response(out)

    async def resolve_route(request: web.Request) -> web.Response:
        data = await body_of(request)
        did = service.check_did_arg(str(data.get("did", "")))
        mode = data.get("mode", "any")
        if mode not in ("any", "dht", "dns"):
            raise InputError("mode must be any, dht or dns")
        name, server = data.get("dns_name"), data.get("dns_server")
        for field, value in (("dns_name", name), ("dns_server", server)):
            if value is not None and not isinstance(value, str):
                raise InputError(f"{field} must be a string, not {type(value).__name__}")
        try:
            result = await resolve(
                home, did, get_hint=node.get_hints, mode=mode, hint_only=bool(data.get("hint_only")),
                dns_name=name or None,
                dns_server=dht_config.parse_hostport(server, "--dns-server") if server else None,
                cache_fallback=bool(data.get("cache_fallback")))
        except HnError:
            lookups["failed"] += 1
            raise
        lookups["ok" if not result.fallback else "fallback"] += 1
        return web.json_response(result.as_dict())

    async def status_route(request: web.Request) -> web.Response:
        guard(request)
        return web.json_response({"listen": ctx.ready_info["dht"], **node.stats()})

    lookups: Counter[str] = Counter()

    def metrics() -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
        stats = node.stats()
        rpcs: dict[tuple[tuple[str, str], ...], float] = {
            (("kind", str(k)),): float(v) for k, v in sorted(stats["counters"].items())}
        return {
            "hn_dht_records": ("Signed hints this DHT node holds", {(): float(stats["records"])}),
            "hn_dht_contacts": ("Contacts in this DHT node's routing table", {(): float(stats["contacts"])}),
            "hn_dht_skew_refused": ("Hints refused as issued beyond the clock-skew window (a clock is off)",
                                    {(): float(stats["skew_refused"])}),
            "hn_dht_lookups": ("Resolves through this node by result",
                               {(("result", r),): float(lookups[r]) for r in ("ok", "fallback", "failed")}),
            "hn_dht_rpcs": ("DHT RPC events by kind (sent, timeouts, malformed, store_ok, ...)", rpcs),
        }

    ctx.extras.setdefault("metrics", []).append(metrics)
    ctx.app.router.add_post("/local/dht/publish", publish_route)
    ctx.app.router.add_post("/local/dht/resolve", resolve_route)
    ctx.app.router.add_get("/local/dht/status", status_route)

    async def join() -> None:
        addrs = []
        for peer in bootstrap:
            try:
                addrs.append(dht_config.resolve_addr(peer))
            except InputError as exc:
                log.warning("dht.bootstrap.bad", extra={"hn": {"peer": peer, "error": exc.message}})
        delay = JOIN_RETRY[0]
        while True:
            known = await node.bootstrap(addrs)
            log.info("dht.joined", extra={"hn": {"contacts": known}})
            if known or not (addrs or node.saved_contacts):
                return
            await asyncio.sleep(delay)
            delay = min(JOIN_RETRY[1], delay * 2)

    async def keep_published() -> None:
        """Republish our own hint at ``fraction`` of its lifetime, or when the presence changes.

        On start (once joined) the hint published before is stored again, so that holders
        that restarted meanwhile have it. An always-on node of the federation profile
        publishes its first hint on start; otherwise nothing enters the DHT until the owner
        ran `hn discover publish` once.
        """
        await join()
        with contextlib.suppress(HnError):
            me = identities.load(home, ctx.identity.alias)
            if ctx.settings.get("profile") == "federation" and not service.own_hint_path(home).exists():
                result = await node.publish(service.sign_own_hint(home, me))
                log.info("dht.publish", extra={"hn": result.as_dict()})
            else:
                # Holders may have restarted since: store what we published before again now.
                for stored in await service.publish_own_again(home, node, me, fraction):
                    log.info("dht.republish", extra={"hn": stored.as_dict()})
        while True:
            path = service.own_hint_path(home)
            if path.exists():
                with contextlib.suppress(HnError):
                    me = identities.load(home, ctx.identity.alias)
                    again = await service.republish_if_due(home, node, me, fraction)
                    if again is not None:
                        log.info("dht.republish", extra={"hn": again.as_dict()})
            await asyncio.sleep(PRESENCE_POLL)

    async def stop() -> None:
        with contextlib.suppress(HnError, OSError):
            node.save_state()
        node.stop()
        control.token_path(home).unlink(missing_ok=True)

    ctx.background.append(keep_published)
    ctx.cleanup.append(stop)
