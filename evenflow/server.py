"""Lifecycle: bind listeners, start the control and data planes and the admin API; reload;
stop gracefully.

Shutdown, in order:
1. stop accepting (close the listening sockets);
2. tell every client connection to close once its current response is done (idle ones now);
3. wait for connections to finish, up to `drain_timeout`;
4. abort what is left, stop probes and the admin API, close idle backend connections, flush
   the access log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

from evenflow import native
from evenflow.config.l4 import TcpListener
from evenflow.config.load import ConfigError, load_file
from evenflow.config.model import Config, HttpListener, Listener
from evenflow.core.address import split_host_port
from evenflow.core.errors import describe_os_error
from evenflow.observability.access_log import AccessLog
from evenflow.proxy.http1.downstream import DownstreamConnection, HttpListenerContext
from evenflow.proxy.tcp import TcpDownstream, TcpListenerContext
from evenflow.proxy.udp import UdpListenerContext, UdpListenerProtocol
from evenflow.runtime.controller import Controller
from evenflow.tls import server as tls_server
from evenflow.tls.server import TlsError, TlsListener
from evenflow.tls.transport import TlsServerProtocol

log = logging.getLogger(__name__)

BACKLOG = 4096  # the kernel queue holds bursts while evenflow is busy or at max_connections


class StartupError(Exception):
    """Evenflow cannot start as configured (a port taken, an unreadable log file...)."""


class Listening:
    """One bound listener: its shared context and what accepts on it (a stream server for
    http and tcp, the datagram transport's context for udp)."""

    __slots__ = ("config", "ctx", "server", "tls")

    def __init__(
        self,
        config: Listener,
        ctx: HttpListenerContext | TcpListenerContext | UdpListenerContext,
        server: asyncio.Server | None,
        tls: TlsListener | None = None,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.server = server
        self.tls = tls  # an HTTP listener's TLS termination, when it has `tls:`

    @property
    def address(self) -> str:
        if self.server is not None:
            return _sockname(self.server)
        ctx = self.ctx
        assert isinstance(ctx, UdpListenerContext)
        host, port = ctx.local
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()
        if isinstance(self.ctx, UdpListenerContext):
            self.ctx.close()
        else:
            self.ctx.close_idle()

    @property
    def connections(self) -> set[Any]:
        ctx = self.ctx
        return set() if isinstance(ctx, UdpListenerContext) else set(ctx.connections)


class Server:
    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.controller = Controller(config, config_path)
        self.access_log: AccessLog | None = None
        self.listening: dict[str, Listening] = {}
        self.admin: Any = None  # evenflow.admin.server.AdminServer when `admin:` is configured
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tls_watch: asyncio.Task[None] | None = None

    @property
    def config(self) -> Config:
        return self.controller.config

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.access_log = _open_access_log(self.config)
        try:
            for listener in self.config.listeners:
                self.listening[listener.name] = await self._bind(listener)
            await self._start_admin()
        except StartupError:
            await self.stop()
            raise
        self.controller.listeners_bound = True
        log.info("data path: %s", native.status)
        await self.controller.start()
        self._tls_watch = loop.create_task(self._watch_certificates())

    async def _bind(self, listener: Listener) -> Listening:
        loop = asyncio.get_running_loop()
        host, port = split_host_port(listener.bind)
        ctx: HttpListenerContext | TcpListenerContext | UdpListenerContext
        server: asyncio.Server | None = None
        tls: TlsListener | None = None
        try:
            if isinstance(listener, HttpListener):
                if listener.tls is not None:
                    tls = TlsListener(listener.name, listener.tls)
                http = ctx = HttpListenerContext(
                    listener.name, self.controller, loop, self.access_log
                )
                if tls is not None:
                    ctx.scheme = "https"
                    ctx.client_cert_header = tls.client_cert_header
                server = await loop.create_server(
                    _http_protocol_factory(loop, http, tls, listener.timeouts.header),
                    host,
                    port,
                    backlog=BACKLOG,
                    reuse_address=True,
                )
            elif isinstance(listener, TcpListener):
                tcp = ctx = TcpListenerContext(listener, self.controller, loop, self.access_log)
                server = await loop.create_server(
                    lambda: TcpDownstream(tcp), host, port, backlog=BACKLOG, reuse_address=True
                )
            else:
                udp = ctx = UdpListenerContext(listener, self.controller, loop, self.access_log)
                await loop.create_datagram_endpoint(
                    lambda: UdpListenerProtocol(udp), local_addr=(host, port)
                )
        except TlsError as exc:
            raise StartupError(f"listener {listener.name}: {exc}") from None
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {listener.bind} ({listener.name}): {describe_os_error(exc)}"
            ) from None
        listening = Listening(listener, ctx, server, tls)
        log.info("listener %s on %s (%s)", listener.name, listening.address, listener.protocol)
        return listening

    async def _start_admin(self) -> None:
        admin_config = self.config.admin
        if admin_config is None:
            return
        from evenflow.admin.server import AdminServer

        self.admin = AdminServer(self, admin_config)
        await self.admin.start()

    def bound(self, listener_name: str) -> str:
        """The address a listener actually bound."""
        return self.listening[listener_name].address

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def reload(self) -> None:
        """Re-read the config file and switch to it; ConfigError (or StartupError when a new
        listener cannot bind) leaves the running config untouched."""
        path = self.controller.config_path
        if path is None:
            raise ConfigError("<config>", [("", "evenflow was not started from a file")])
        async with self._reload_lock:
            config = load_file(path).config
            await self.apply(config)

    async def apply(self, config: Config) -> None:
        """Switch to `config`: bind new listeners first (any failure changes nothing), then
        swap the control plane's config, then stop listeners that are gone. Established
        connections of listeners that stay are untouched."""
        new: dict[str, Listening] = {}
        keep = {}
        staged = {}  # TLS of kept listeners, re-read from disk: installed once nothing can fail
        previous_log = self.access_log
        log_changed = config.access_log != self.config.access_log
        if log_changed:
            self.access_log = _open_access_log(config)  # new listeners below log to it
        try:
            for listener in config.listeners:
                current = self.listening.get(listener.name)
                if (
                    current is not None
                    and current.config.bind == listener.bind
                    and current.config.protocol == listener.protocol
                    and (listener.protocol == "http" or current.config == listener)
                ):
                    keep[listener.name] = current
                    if isinstance(listener, HttpListener):
                        staged[listener.name] = _stage_tls(current, listener)
                else:
                    new[listener.name] = await self._bind(listener)
        except StartupError:
            for listening in new.values():
                listening.stop_accepting()
            if log_changed:
                if self.access_log is not None:
                    self.access_log.close()
                self.access_log = previous_log
            raise
        self.controller.apply_config(config)
        if log_changed:
            # kept listeners log to the new file from their next line; the old one is flushed
            for listening in keep.values():
                listening.ctx.access_log = self.access_log
            if previous_log is not None:
                previous_log.close()
        for name, certificates in staged.items():
            tls, http = keep[name].tls, keep[name].ctx
            if tls is not None and certificates is not None:
                tls.install(certificates)
                if isinstance(http, HttpListenerContext):
                    http.client_cert_header = tls.client_cert_header
        for name, listening in self.listening.items():
            if name not in keep:
                listening.stop_accepting()
        for name, listening in keep.items():
            listening.config = next(lst for lst in config.listeners if lst.name == name)
        self.listening = {**keep, **new}
        log.warning(
            "config reloaded: %d listeners, %d pools", len(config.listeners), len(config.pools)
        )

    async def _watch_certificates(self) -> None:
        """Reload a TLS listener's certificates when their files change on disk."""
        while True:
            await asyncio.sleep(tls_server.POLL_INTERVAL_S)
            for listening in list(self.listening.values()):
                if listening.tls is not None:
                    try:
                        listening.tls.reload_if_changed()
                    except Exception:
                        log.exception("listener %s: certificate reload failed", listening.tls.name)

    async def stop(self) -> None:
        """Graceful shutdown (see the module docstring)."""
        watch, self._tls_watch = self._tls_watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        self.controller.listeners_bound = False
        listenings = list(self.listening.values())
        for listening in listenings:
            listening.stop_accepting()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while any(listening.connections for listening in listenings):
            if loop.time() >= deadline:
                left = sum(len(listening.connections) for listening in listenings)
                log.warning("drain timeout: closing %d connections still busy", left)
                for listening in listenings:
                    for conn in listening.connections:
                        if conn.transport is not None:
                            conn.transport.abort()
                break
            await asyncio.sleep(0.05)
        await self.controller.stop()
        if self.admin is not None:
            await self.admin.stop()
        for backend in self.controller.all_backends():
            for conn in list(backend.idle):
                conn.close()
            backend.idle.clear()
        if self.access_log is not None:
            self.access_log.close()


def _http_protocol_factory(
    loop: asyncio.AbstractEventLoop,
    http: HttpListenerContext,
    tls: TlsListener | None,
    handshake_timeout_s: float,
) -> Callable[[], asyncio.Protocol]:
    """What serves each connection an HTTP listener accepts: HTTP/1.1 (which hands h2c and
    ALPN h2 over to HTTP/2), behind evenflow's own TLS layer when the listener has `tls:`.
    The handshake counts against the header timeout (slowloris in TLS)."""

    def make_http() -> asyncio.Protocol:
        return DownstreamConnection(http)

    if tls is None:
        return make_http
    context = tls.context
    return lambda: TlsServerProtocol(loop, context, make_http, handshake_timeout_s)


def _stage_tls(current: Listening, listener: HttpListener) -> tls_server.Certificates | None:
    """A kept listener's certificates for `listener`, loaded but not in use yet."""
    if (current.tls is None) != (listener.tls is None):
        # the socket was created with (or without) TLS: only a new socket can change that
        raise StartupError(
            f"listener {listener.name}: adding or removing tls needs a restart (or a new "
            "listener name and bind)"
        )
    if current.tls is None or listener.tls is None:
        return None
    try:
        return current.tls.stage(listener.tls)
    except TlsError as exc:
        raise StartupError(f"listener {listener.name}: {exc}") from None


def _sockname(server: asyncio.Server) -> str:
    sock = server.sockets[0]
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def install_event_loop() -> None:
    """uvloop when installed: about twice asyncio's own loop on the data path."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _open_access_log(config: Config) -> AccessLog | None:
    log_config = config.access_log
    if log_config.path == "off":
        return None
    try:
        return AccessLog(asyncio.get_running_loop(), log_config.path, log_config.format)
    except OSError as exc:
        raise StartupError(
            f"access_log.path: cannot open {log_config.path}: {exc.strerror}"
        ) from None


async def serve(config: Config, config_path: str | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully. SIGHUP reloads the file."""
    server = Server(config, config_path)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_on_signal(server)))
    await server.start()
    # What start-up made (modules, the config's models, the snapshot) lives until exit: frozen,
    # out of the collector's generations, no collection walks it again. A young generation of
    # 10,000 objects, not 700: an HTTP/2 stream makes a few dozen tracked objects that
    # reference counting frees, and collecting every 700 allocations cost 5% of a request
    # (bench: h2c 189k -> 179k instructions); cyclic garbage waits a little longer, bounded.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    try:
        await server.wait_stopped()
        log.info("stopping: draining connections (up to %gs)", config.drain_timeout)
    finally:
        await server.stop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _reload_on_signal(server: Server) -> None:
    try:
        await server.reload()
    except ConfigError as exc:
        for line in exc.lines():
            log.error("reload refused, keeping the running config: %s", line)
    except StartupError as exc:
        log.error("reload refused, keeping the running config: %s", exc)
