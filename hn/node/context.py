"""What a capability package gets from the node it runs in.

Each capability (federation, relay, dht, backup, trust, metrics) may provide a module
``hn.<capability>.node_plugin`` with ``async def setup(ctx: NodeContext) -> None``. The
node calls every setup before it starts listening: a plugin adds routes to ``ctx.app``,
appends long-running coroutines to ``ctx.background`` (started once the node listens,
cancelled on shutdown), cleanup coroutines to ``ctx.cleanup``, and facts for the
``MCP_READY`` line to ``ctx.ready_info``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hn.vault.home import Home
from hn.vault.identities import Identity

if TYPE_CHECKING:
    from hn.node.state import NodeState

PLUGINS = (
    "hn.federation.node_plugin",
    "hn.relay.node_plugin",
    "hn.dht.node_plugin",
    "hn.backup.node_plugin",
    "hn.trust.node_plugin",
    "hn.node.metrics_plugin",
)

CTX_KEY: web.AppKey[NodeContext] = web.AppKey("hn_ctx")  # type: ignore[name-defined]


@dataclass
class NodeContext:
    home: Home
    identity: Identity
    app: web.Application
    settings: dict[str, Any]
    state: NodeState
    base_url: str = ""
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    ready_info: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
