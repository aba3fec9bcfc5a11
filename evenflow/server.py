"""Lifecycle: bind listeners, start the control and data planes, stop gracefully.

Shutdown, in order:
1. stop accepting (close the listening sockets);
2. tell every client connection to close once its current response is done (idle ones now);
3. wait for connections to finish, up to `drain_timeout`;
4. abort what is left, close idle backend connections, flush the access log.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from evenflow.config.model import Config
from evenflow.core.address import split_host_port
from evenflow.observability.access_log import AccessLog
from evenflow.proxy.http1.downstream import DownstreamConnection, HttpListenerContext
from evenflow.runtime.controller import Controller

log = logging.getLogger(__name__)

BACKLOG = 4096  # the kernel queue holds bursts while evenflow is busy or at max_connections


class StartupError(Exception):
    """Evenflow cannot start as configured (a port taken, an unreadable log file...)."""


class Server:
    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.controller = Controller(config, config_path)
        self.access_log: AccessLog | None = None
        self.listeners: list[tuple[HttpListenerContext, asyncio.Server]] = []
        self._stopping = asyncio.Event()

    @property
    def config(self) -> Config:
        return self.controller.config

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        log_config = self.config.access_log
        if log_config.path != "off":
            try:
                self.access_log = AccessLog(loop, log_config.path, log_config.format)
            except OSError as exc:
                raise StartupError(
                    f"access_log.path: cannot open {log_config.path}: {exc.strerror}"
                ) from None
        try:
            for listener in self.config.listeners:
                ctx = HttpListenerContext(listener.name, self.controller, loop, self.access_log)
                host, port = split_host_port(listener.bind)
                server = await loop.create_server(
                    lambda ctx=ctx: DownstreamConnection(ctx),  # type: ignore[misc]
                    host,
                    port,
                    backlog=BACKLOG,
                    reuse_address=True,
                )
                self.listeners.append((ctx, server))
                log.info("listener %s on %s (%s)", listener.name, self.bound(listener.name), "http")
        except OSError as exc:
            await self.stop()
            raise StartupError(
                f"cannot listen on {listener.bind} ({listener.name}): {exc.strerror or exc}"
            ) from None

    def bound(self, listener_name: str) -> str:
        """The address a listener actually bound (useful with port 0)."""
        for ctx, server in self.listeners:
            if ctx.name == listener_name:
                sock = server.sockets[0]
                host, port = sock.getsockname()[:2]
                return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
        raise KeyError(listener_name)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        """Graceful shutdown (see the module docstring)."""
        for _, server in self.listeners:
            server.close()
        for ctx, _ in self.listeners:
            ctx.close_idle()
        deadline = asyncio.get_running_loop().time() + self.config.drain_timeout
        while any(ctx.connections for ctx, _ in self.listeners):
            if asyncio.get_running_loop().time() >= deadline:
                left = sum(len(ctx.connections) for ctx, _ in self.listeners)
                log.warning("drain timeout: closing %d connections still busy", left)
                for ctx, _ in self.listeners:
                    for conn in list(ctx.connections):
                        if conn.transport is not None:
                            conn.transport.abort()
                break
            await asyncio.sleep(0.05)
        for backend in self.controller.all_backends():
            for conn in list(backend.idle):
                conn.close()
            backend.idle.clear()
        if self.access_log is not None:
            self.access_log.close()


def install_event_loop() -> None:
    """uvloop when installed: about twice asyncio's own loop on the data path."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: Config, config_path: str | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    server = Server(config, config_path)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    await server.start()
    try:
        await server.wait_stopped()
        log.info("stopping: draining connections (up to %gs)", config.drain_timeout)
    finally:
        await server.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
