"""The node: app factory, core routes, plugin loading, and the serve loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from hn import __version__
from hn.backup import swap
from hn.errors import InputError, NotFound, storage_failure
from hn.node.context import CTX_KEY, PLUGINS, NodeContext
from hn.node.http import DEFAULT_BODY_CAP, canonical_response, errors_middleware, json_error
from hn.node.state import NodeState
from hn.optional import import_optional
from hn.proto import timefmt
from hn.proto.canonical import canonical
from hn.vault import atomic, identities, presence, serving
from hn.vault.home import Home

log = logging.getLogger("hn.node")

KEEPALIVE = 15.0
SHUTDOWN_GRACE = 3.0
MAX_LINE = 8190
MAX_HEADERS = 64
# After an error answer, the rest of an unread body is drained for at most this long.
LINGER = 1.0
# Open connections at most (setting max_connections); each holds a file descriptor, and
# a node out of descriptors cannot open its own files either.
MAX_CONNECTIONS = 512
FD_RESERVE = 256  # descriptors kept for the node's own files, databases and DHT socket
TLS_HANDSHAKE = 10.0  # seconds a TLS handshake, or the closing exchange, may take
# A background task that fails is started again after RESTART_FIRST seconds, doubling
# up to RESTART_CAP while it keeps failing; one that ran RESTART_RESET_AFTER seconds
# before failing starts again from RESTART_FIRST.
RESTART_FIRST = 1.0
RESTART_CAP = 300.0
RESTART_RESET_AFTER = 300.0
BUSY = json.dumps({"error": "busy", "detail": "this node has too many open connections; try again shortly"})


class ConnectionCap:
    """Answers a connection past the cap with a JSON 503 and closes it, before reading a byte.

    aiohttp tells its server of every new connection (``connection_made``); this wraps that
    call on our own server instance, so a flood of idle sockets costs the node nothing but
    the refusals. The count is exported as ``hn_connections_refused_total``.
    """

    def __init__(self, server: web.Server, cap: int) -> None:
        self.server = server
        self.cap = cap
        self.refused = 0
        self.inner = server.connection_made
        server.connection_made = self.connection_made  # type: ignore[method-assign]

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        self.inner(handler, transport)
        if len(self.server.connections) <= self.cap:
            return
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning("connections.refused", extra={"hn": {"cap": self.cap, "refused": self.refused}})
        body = BUSY.encode()
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        b"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        handler.force_close()  # its request loop ends before it reads anything; the transport closes

    def metrics(self) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
        return {"hn_connections_refused_total": ("Connections answered 503 because the node had max_connections open",
                                                 {(): float(self.refused)}),
                "hn_connections_open": ("Open HTTP connections", {(): float(len(self.server.connections))})}


class JsonErrorsHandler(web.RequestHandler):
    """aiohttp's connection handler, answering in the node's JSON error shape when aiohttp
    itself refuses a request (a bad request line or header, a line too long, too many
    headers, a bad Content-Length): every other answer comes from the app, whose
    middleware already speaks JSON.

    Such refusals are what any client can provoke at will, so they are logged at debug
    level on the node's logger, not as aiohttp's error with a traceback.
    """

    async def start(self) -> None:
        # A connection refused at the cap (ConnectionCap) is closed before its request loop
        # runs; the loop would then fail on the manager it no longer has, as a task
        # exception logged with a traceback for every refusal.
        if self._manager is None:
            return
        await super().start()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs it; raises if an answer has begun
            response = json_error(status, "internal", "internal error")
        else:
            if request.writer.output_size > 0:  # as aiohttp: an answer has begun, close instead
                raise ConnectionError("response already started; cannot send the error")
            detail = (message or HTTPStatus(status).phrase).strip().splitlines()[0]
            log.debug("http.refused", extra={"hn": {"status": status, "detail": detail}})
            too_large = isinstance(exc, LineTooLong) or "Too many headers" in detail
            response = json_error(status, "too_large" if too_large else "malformed", detail)
        response.force_close()
        return response


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (never past the
    hard limit); returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on this platform
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return wanted if soft == resource.RLIM_INFINITY else soft


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"{what} must be HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def ctx_of(request: web.Request) -> NodeContext:
    return request.app[CTX_KEY]


async def health(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    return web.json_response({"status": "ok", "version": __version__, "did": ctx.identity.did})


async def presence_route(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    publisher = ctx.extras.get("publisher")
    if publisher is not None:
        doc = publisher.snapshot().presence
    else:
        doc = presence.current(ctx.home, ctx.identity.did)
    if doc is None:
        raise NotFound("this node has no presence yet")
    return canonical_response(canonical(doc))


async def identity_route(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    ident = identities.load(ctx.home, ctx.identity.alias)
    return canonical_response(canonical(ident.doc))


async def create_app(ctx: NodeContext) -> web.Application:
    ctx.app[CTX_KEY] = ctx
    ctx.app.router.add_get("/health", health)
    ctx.app.router.add_get("/.well-known/hn/presence", presence_route)
    ctx.app.router.add_get("/.well-known/hn/identity", identity_route)
    for name in PLUGINS:
        module = import_optional(name)
        if module is not None:
            await module.setup(ctx)
    return ctx.app


def build_context(home: Home, settings: dict[str, Any]) -> NodeContext:
    me = identities.load(home)
    app = web.Application(middlewares=[errors_middleware], client_max_size=DEFAULT_BODY_CAP)
    ctx = NodeContext(home=home, identity=me, app=app, settings=settings, state=NodeState(home))
    scheme = "https" if settings.get("tls_cert") and settings.get("tls_key") else "http"
    listen = settings.get("listen", "127.0.0.1:7733")
    ctx.base_url = (settings.get("public_url") or f"{scheme}://{listen}").rstrip("/")
    return ctx


def tls_context(settings: dict[str, Any]) -> ssl.SSLContext | None:
    cert, key = settings.get("tls_cert"), settings.get("tls_key")
    if not cert or not key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return context


def bind_socket(host: str) -> socket.socket:
    """A TCP socket bound to ``host`` on a port the system picks (not listening yet)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM,
                                                            flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:0: {exc.strerror or exc} (--listen chooses another)") from exc
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:0: {(exc.strerror or str(exc)).lower()} "
                         "(--listen chooses another)") from exc
    return sock


class Node:
    """One running node: start, serve until stopped, stop cleanly."""

    def __init__(self, home: Home, settings: dict[str, Any]) -> None:
        self.home = home
        self.settings = settings
        self.ctx: NodeContext | None = None
        self.runner: web.AppRunner | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ssl: ssl.SSLContext | None = None
        self.port = 0
        self.cap: ConnectionCap | None = None
        self.listener: asyncio.AbstractServer | None = None
        self.serve_lock = -1
        self.wrote_node_file = False  # run/node.json is this node's to remove only once it wrote it

    async def start(self) -> dict[str, Any]:
        host, port = parse_hostport(self.settings.get("listen", "127.0.0.1:7733"), "--listen")
        # A restore stopped part-way is finished first (before the lock makes run/ in a
        # folder the vault may still have to move back into).
        done = swap.recover(self.home.root)
        if done is not None:
            log.warning("node.restore_recovered", extra={"hn": {"action": done}})
        # One node per vault: a second would share its state and, on exit, remove the
        # first one's run/node.json.
        self.serve_lock = serving.hold(self.home.root)
        try:
            return await self._start(host, port)
        except BaseException:
            serving.release(self.serve_lock)
            self.serve_lock = -1
            raise

    async def _start(self, host: str, port: int) -> dict[str, Any]:
        wanted = self.settings.get("max_connections")
        wanted = MAX_CONNECTIONS if wanted is None else wanted
        if type(wanted) is not int or wanted < 1:
            raise InputError(f"max_connections must be a positive integer, not {wanted!r}")
        self.ssl = tls_context(self.settings)
        sock = None
        if port == 0:
            # The port the system picks is known only once bound, and the signed presence,
            # config/node.toml and signature checks all need the node's real URL.
            sock = bind_socket(host)
            port = sock.getsockname()[1]
            self.settings["listen"] = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            return await self._serve_on(host, port, sock, wanted)
        except BaseException:
            if sock is not None:
                sock.close()
            raise

    async def _serve_on(self, host: str, port: int, sock: socket.socket | None, wanted: int) -> dict[str, Any]:
        ctx = build_context(self.home, self.settings)
        self.ctx = ctx
        # The presence names where this node can be reached.
        config = self.home.read_toml("node.toml")
        if config.get("public_url") != ctx.base_url:
            config["public_url"] = ctx.base_url
            self.home.write_toml("node.toml", config)
        presence.refresh(self.home, ctx.identity, url=ctx.base_url)
        await create_app(ctx)
        # keepalive_timeout also bounds how long a connection may take to send its first
        # request's headers (aiohttp arms it once the connection is made: at accept, or for
        # TLS once the handshake is done), so header trickling is cut off. These settings
        # build every connection's handler (JsonErrorsHandler, below); the runner's server
        # never builds one itself, as the node opens its own listener.
        handling: dict[str, Any] = {
            "keepalive_timeout": float(self.settings.get("keepalive_timeout") or KEEPALIVE),
            "access_log": None, "max_line_size": MAX_LINE, "max_field_size": MAX_LINE,
            "max_headers": MAX_HEADERS, "lingering_time": LINGER}
        self.runner = web.AppRunner(ctx.app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        # Never more connections than the descriptors left once the node's own are kept.
        cap = max(1, min(wanted, raise_fd_limit(wanted + FD_RESERVE) - FD_RESERVE))
        if cap < wanted:
            log.warning("connections.cap", extra={"hn": {"wanted": wanted, "cap": cap,
                                                         "reason": "open-file limit"}})
        self.cap = ConnectionCap(server, cap)
        ctx.extras.setdefault("metrics", []).append(self.cap.metrics)
        # The listener is opened here rather than by aiohttp's TCPSite, which cannot bound
        # the TLS handshake (asyncio's default lets a socket that never sends a ClientHello
        # hold a descriptor for 60 s, and the cap only counts a connection once it is done)
        # nor choose the handler class (JsonErrorsHandler).
        try:
            loop = asyncio.get_running_loop()
            where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": host, "port": port}
            self.listener = await loop.create_server(
                lambda: JsonErrorsHandler(server, loop=loop, **handling), **where, ssl=self.ssl, backlog=256,
                ssl_handshake_timeout=TLS_HANDSHAKE if self.ssl is not None else None,
                ssl_shutdown_timeout=TLS_HANDSHAKE if self.ssl is not None else None)
        except OSError as exc:  # a port in use, an address not on this machine, a name that does not resolve
            reason = os.strerror(exc.errno) if isinstance(exc.errno, int) and exc.errno > 0 else (exc.strerror or str(exc))
            raise InputError(f"cannot listen on {host}:{port}: {reason.lower()} (--listen chooses another)") from exc
        if self.listener.sockets:
            self.port = self.listener.sockets[0].getsockname()[1]
        for factory in ctx.background:
            self.tasks.append(asyncio.create_task(self._guard(factory)))
        info = {
            "did": ctx.identity.did,
            "listen": f"{host}:{self.port or port}",
            "base_url": ctx.base_url,
            "presence_url": ctx.base_url + "/.well-known/hn/presence",
            "dht": None,
            "tls": self.ssl is not None,
            "pid": os.getpid(),
            "max_connections": cap,
        }
        info.update(ctx.ready_info)
        atomic.write_bytes(self.home.path(*serving.NODE_FILE),
                           canonical({**info, "started_at": timefmt.now_iso()}), mode=0o600)
        self.wrote_node_file = True
        return info

    async def _guard(self, factory: Any) -> None:
        """Run a background task for the node's life: one that fails is logged and started
        again, after a pause that doubles while it keeps failing quickly."""
        pause = RESTART_FIRST
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started > RESTART_RESET_AFTER:
                    pause = RESTART_FIRST  # it had been running well: a new failure, not the same one
                name = getattr(factory, "__qualname__", repr(factory))
                failure = storage_failure(exc)
                if failure is not None:
                    log.warning("background.storage_failure", extra={"hn": {"task": name, "error": failure.message,
                                                                            "restart_in": pause}})
                else:
                    log.exception("background task failed", extra={"hn": {"task": name, "restart_in": pause}})
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_CAP)

    def reload_tls(self) -> bool:
        if self.ssl is None:
            return False
        try:
            self.ssl.load_cert_chain(self.settings["tls_cert"], self.settings["tls_key"])
        except (OSError, ssl.SSLError) as exc:
            log.error("tls.reload.failed", extra={"hn": {"error": str(exc)}})
            return False
        log.info("tls.reload", extra={"hn": {"cert": self.settings["tls_cert"]}})
        return True

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()  # no new connections first; the runner winds down the open ones
            self.listener = None
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=2)
        if self.ctx is not None:
            for fn in reversed(self.ctx.cleanup):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fn(), timeout=2)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.wrote_node_file:
            # Not when this node was refused at start: the file is then the running node's.
            self.home.path(*serving.NODE_FILE).unlink(missing_ok=True)
            self.wrote_node_file = False
        if self.ctx is not None:
            self.ctx.state.close()
        if self.serve_lock >= 0:
            serving.release(self.serve_lock)
            self.serve_lock = -1


async def serve(home: Home, settings: dict[str, Any]) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the TLS certificate."""
    node = Node(home, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.reload_tls)
    try:
        info = await node.start()
        sys.stdout.write("MCP_READY " + json.dumps(info, sort_keys=True) + "\n")
        sys.stdout.flush()
        log.info("node.ready", extra={"hn": info})
        await stop.wait()
        log.info("node.stopping")
    finally:
        await node.stop()
