"""GET /metrics: Prometheus text format (prometheus-client), one registry per node.

Counters of requests are kept by a middleware; everything else is read from the node's
state when scraped (peers by health, sync results, relay entries, backups, DHT). Other
capabilities add gauges by putting a callable in ``ctx.extras["metrics"]`` that returns
``{metric_name: (help, {label_tuple: value})}``. Served to loopback clients, and to
others only when the node setting ``metrics_public`` is true.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hn.errors import Forbidden
from hn.node.context import CTX_KEY, NodeContext
from hn.node.http import Handler
from hn.proto import timefmt

Provider = Callable[[], dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]]


def _dir_stats(path: Any) -> tuple[int, int]:
    files = size = 0
    if not path.is_dir():
        return 0, 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            if name.startswith("."):
                continue
            try:
                size += os.path.getsize(os.path.join(base, name))
                files += 1
            except OSError:
                continue
    return files, size


class StateCollector(Collector):
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        from hn.federation.sync import health_of

        ctx = self.ctx
        interval = float(ctx.settings.get("sync_interval") or 300)
        now = timefmt.now()
        peers = GaugeMetricFamily("hn_federation_peers", "Federation peers by health", labels=["health"])
        counts = {"ok": 0, "stale": 0, "failing": 0, "new": 0}
        for row in ctx.state.peers():
            counts[health_of(row, interval, now)] = counts.get(health_of(row, interval, now), 0) + 1
        for health, value in sorted(counts.items()):
            peers.add_metric([health], value)
        yield peers
        counters = ctx.state.counters()
        syncs = GaugeMetricFamily("hn_federation_syncs", "Peer syncs since the state was created", labels=["result"])
        syncs.add_metric(["success"], counters.get("sync_success", 0))
        syncs.add_metric(["failure"], counters.get("sync_failure", 0))
        syncs.add_metric(["local_failure"], counters.get("sync_local_failure", 0))
        yield syncs
        store = ctx.extras.get("relay_store")
        relayed = GaugeMetricFamily("hn_relay_entries", "Live relayed presences held by this node")
        relayed.add_metric([], len(store.live(now)) if store is not None else 0)
        yield relayed
        files, size = _dir_stats(ctx.home.path("backups"))
        backups = GaugeMetricFamily("hn_backup_files", "Files of friends' backups stored by this node")
        backups.add_metric([], files)
        yield backups
        backup_bytes = GaugeMetricFamily("hn_backup_bytes", "Bytes of friends' backups stored by this node")
        backup_bytes.add_metric([], size)
        yield backup_bytes
        for provider in ctx.extras.get("metrics", []):
            for name, (text, values) in provider().items():
                labels = sorted({k for key in values for k, _ in key})
                family = GaugeMetricFamily(name, text, labels=labels)
                for key, value in values.items():
                    family.add_metric([dict(key)[label] for label in labels], value)
                yield family


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource.get_info() if request.match_info.route.resource else {}
    return str(info.get("path") or info.get("formatter") or "unmatched")


async def setup(ctx: NodeContext) -> None:
    registry = CollectorRegistry()
    requests = Counter("hn_http_requests", "HTTP requests by route, method and status",
                       ["route", "method", "status"], registry=registry)
    registry.register(StateCollector(ctx))
    ctx.extras["metrics_registry"] = registry

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        requests.labels(_route_name(request), request.method, str(response.status)).inc()
        return response

    # Outermost-but-one: sees the final status after the JSON error middleware ran.
    ctx.app.middlewares.insert(0, count)

    async def metrics(request: web.Request) -> web.Response:
        node: NodeContext = request.app[CTX_KEY]
        peer = request.remote or ""
        try:
            loopback = ipaddress.ip_address(peer).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not node.settings.get("metrics_public"):
            raise Forbidden("metrics are served to loopback clients only (set metrics_public to change)")
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    ctx.app.router.add_get("/metrics", metrics)
