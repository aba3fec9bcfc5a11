"""Layer 4 TCP: a client connection relayed as bytes to a backend connection, both ways.

Nothing is parsed after the start: a connection may first carry a PROXY header (when the
listener sits behind another L4 tier) or be routed on its TLS ClientHello's server name
(passthrough: TLS is not terminated), then every byte goes through as it came.

Costs are per connection, not per byte: both directions read into one buffer shared by every
relay (each read is written on before the next read happens, on this single thread), a peer's
`pause_writing` pauses the other side's reading (so a fast sender never makes evenflow buffer
more than the transport's high-water mark), half-closes are passed on with `write_eof`, and
resets with `abort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, cast

from evenflow.balancing.base import PickContext
from evenflow.config.l4 import TcpListener, parse_rate
from evenflow.core.backend import BackendState
from evenflow.core.errors import connect_error
from evenflow.proxy.proxy_protocol import (
    ProxyHeaderParser,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
)
from evenflow.proxy.watchdog import Watchdog, periods
from evenflow.tls.clienthello import ClientHelloError, ClientHelloParser

if TYPE_CHECKING:
    from evenflow.observability.access_log import AccessLog
    from evenflow.proxy.http1.downstream import SnapshotSource
    from evenflow.runtime.snapshot import PoolRuntime

log = logging.getLogger(__name__)

# One read buffer for every relay: asyncio calls get_buffer then buffer_updated for one read,
# and the bytes are written on (copied) inside buffer_updated, so no two reads ever overlap.
# Per-connection buffers would cost 2 x 64 KiB x connections of memory for nothing.
_READ_BUFFER = bytearray(256 * 1024)
_READ_VIEW = memoryview(_READ_BUFFER)

# Bytes held from the client while the backend connection is being made (then it is paused).
HOLD_LIMIT_BYTES = 256 * 1024
# Source addresses whose connection rate is tracked (least recently seen forgotten first).
RATE_TABLE_LIMIT = 100_000

# close reasons, as the connection log says them
CLIENT = "client"
BACKEND = "backend"
TIMEOUT = "timeout"
RESET = "reset"
CONNECT_FAILED = "connect_failed"
REFUSED = "refused"
SHUTDOWN = "shutdown"


class TcpListenerStats:
    """Connection-level counters of one listener (the metrics endpoint reads them)."""

    __slots__ = ("opened", "closed", "refused", "bytes_in", "bytes_out", "reasons")

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.refused = 0
        self.bytes_in = 0  # from clients
        self.bytes_out = 0  # to clients
        self.reasons: dict[str, int] = {}


class TcpListenerContext:
    """What every connection of one tcp listener shares."""

    __slots__ = (
        "name",
        "config",
        "source",
        "loop",
        "connections",
        "waiting",
        "access_log",
        "closing",
        "stats",
        "_trusted",
        "_rate",
        "_rate_table",
    )

    def __init__(
        self,
        config: TcpListener,
        source: SnapshotSource,
        loop: asyncio.AbstractEventLoop,
        access_log: AccessLog | None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.source = source
        self.loop = loop
        self.connections: set[TcpDownstream] = set()
        self.waiting: deque[TcpDownstream] = deque()
        self.access_log = access_log
        self.closing = False
        self.stats = TcpListenerStats()
        accept = config.accept_proxy
        self._trusted = (
            [ipaddress.ip_network(c, strict=False) for c in accept.trusted] if accept else None
        )
        rate = config.limits.per_source_rate
        self._rate = parse_rate(rate) if rate else 0.0
        self._rate_table: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def is_trusted(self, ip: str) -> bool:
        """May `ip` send a PROXY header? (Only when accept_proxy is configured.)"""
        if self._trusted is None:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def allow_rate(self, ip: str) -> bool:
        """Token bucket per source address: `per_source_rate` new connections, burst the same."""
        if not self._rate:
            return True
        now = time.monotonic()
        table = self._rate_table
        tokens, last = table.pop(ip, (self._rate, now))
        tokens = min(max(self._rate, 1.0), tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        table[ip] = (tokens - 1.0 if allowed else tokens, now)
        if len(table) > RATE_TABLE_LIMIT:
            table.popitem(last=False)
        return allowed

    def close_idle(self) -> None:
        """Shutdown: stop taking connections; established ones run until the drain timeout."""
        self.closing = True
        for conn in list(self.waiting):
            conn.abort(SHUTDOWN)


# downstream states
_HANDSHAKE = 0  # reading a PROXY header and/or a ClientHello before choosing a backend
_CONNECTING = 1
_RELAYING = 2
_DONE = 3


class TcpDownstream(asyncio.BufferedProtocol):
    """The client side; owns the pair's state, its timeout and its log line."""

    __slots__ = (
        "ctx",
        "transport",
        "upstream",
        "state",
        "client",
        "local",
        "pick_ctx",
        "pool",
        "backend",
        "route",
        "tried",
        "held",
        "held_bytes",
        "proxy_parser",
        "hello_parser",
        "server_name",
        "client_eof",
        "backend_eof",
        "bytes_in",
        "bytes_out",
        "started_at",
        "connect_ms",
        "close_reason",
        "watchdog",
        "_quiet",
        "_last_bytes",
        "_waited",
        "_admitted",
        "_finished",
    )

    def __init__(self, ctx: TcpListenerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.upstream: TcpUpstream | None = None
        self.state = _HANDSHAKE
        self.client: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.pick_ctx = PickContext()
        self.pool: PoolRuntime | None = None
        self.backend: BackendState | None = None
        self.route = ""
        self.tried: list[BackendState] = []
        self.held: list[bytes] = []  # client bytes read before the backend connection is up
        self.held_bytes = 0
        self.proxy_parser: ProxyHeaderParser | None = None
        self.hello_parser: ClientHelloParser | None = None
        self.server_name: str | None = None
        self.client_eof = False
        self.backend_eof = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.started_at = time.perf_counter()
        self.connect_ms = 0.0
        self.close_reason = ""
        self.watchdog: Watchdog | None = None
        self._quiet = 0
        self._last_bytes = -1
        self._waited = False
        self._admitted = False  # counted among the served (not refused, not waiting)
        self._finished = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        ctx = self.ctx
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else ("unknown", 0)
        self.local = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
        self.pick_ctx.client_ip = self.client[0]
        ctx.connections.add(self)
        ctx.stats.opened += 1
        limit = ctx.config.limits.max_connections
        if ctx.closing or len(ctx.connections) > 2 * limit or not ctx.allow_rate(self.client[0]):
            self.abort(REFUSED)
            return
        config = ctx.config
        timeouts = config.timeouts
        self.watchdog = Watchdog(
            ctx.loop,
            min(timeouts.idle, timeouts.handshake, timeouts.half_closed),
            self._check_timeouts,
        )
        self.watchdog.start()
        if len(ctx.connections) - len(ctx.waiting) > limit:
            transport.pause_reading()  # waits, unread, until another connection closes
            ctx.waiting.append(self)
            self._waited = True
            return
        self._admitted = True
        self._begin()

    def _begin(self) -> None:
        config = self.ctx.config
        if config.accept_proxy is not None:
            if not self.ctx.is_trusted(self.client[0]):
                log.info(
                    "listener %s: %s is not a trusted PROXY sender: closed",
                    self.ctx.name,
                    self.client[0],
                )
                self.abort(REFUSED)
                return
            self.proxy_parser = ProxyHeaderParser()
        elif config.routes:
            self.hello_parser = ClientHelloParser()
        else:
            self._route_and_connect()

    def admit(self) -> None:
        """A connection that waited at max_connections may now be served."""
        if self.transport is not None and self.state == _HANDSHAKE and self._waited:
            self._waited = False
            self._admitted = True
            self.transport.resume_reading()
            self._begin()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        if self.state == _RELAYING:
            upstream = self.upstream
            if upstream is not None and upstream.transport is not None:
                upstream.transport.write(_READ_BUFFER[:nbytes])
            return
        data = bytes(_READ_VIEW[:nbytes])
        if self.state == _HANDSHAKE:
            self._handshake(data)
        elif self.state == _CONNECTING:
            self._hold(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        if not self.backend_eof:
            self.close_reason = self.close_reason or CLIENT  # the client ended first
        if self.state == _RELAYING and self.upstream is not None:
            self.upstream.write_eof()  # half-close passed on: the backend may still answer
            return not self.backend_eof
        if self.state == _HANDSHAKE:
            self._finish_handshake_at_eof()
        return True  # keep the write side: what is held still goes to the backend

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or (RESET if exc is not None else CLIENT)
        upstream = self.upstream
        if upstream is not None:
            if exc is not None:
                upstream.reset()  # a reset is passed on as a reset
            else:
                upstream.close()
        self._finish(reason)

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- handshake: PROXY header, ClientHello --------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        self._hold(data)
        if self.proxy_parser is not None:
            try:
                result = self.proxy_parser.feed(data)
            except ProxyProtocolError as exc:
                log.info(
                    "listener %s: bad PROXY header from %s: %s", self.ctx.name, self.client[0], exc
                )
                self.abort(REFUSED)
                return
            if result is None:
                return
            self.proxy_parser = None
            if result.source is not None:
                self.client = result.source  # the real client, as the tier in front saw it
                self.pick_ctx.client_ip = result.source[0]
            if result.destination is not None:
                self.local = result.destination
            self.held = [result.remaining] if result.remaining else []
            self.held_bytes = len(result.remaining)
            if self.ctx.config.routes:
                self.hello_parser = ClientHelloParser()
                if result.remaining:
                    self._feed_hello(result.remaining)
                return
            self._route_and_connect()
            return
        self._feed_hello(data)

    def _feed_hello(self, data: bytes) -> None:
        parser = self.hello_parser
        if parser is None:
            return
        try:
            hello = parser.feed(data)
        except ClientHelloError as exc:
            # not TLS (or garbage) on a listener that routes TLS: nowhere sensible to send it
            log.info(
                "listener %s: no TLS ClientHello from %s: %s", self.ctx.name, self.client[0], exc
            )
            self.hello_parser = None
            self.abort(REFUSED)
            return
        if hello is None:
            return
        self.hello_parser = None
        self.server_name = hello.server_name
        self._route_and_connect()

    def _finish_handshake_at_eof(self) -> None:
        if self.proxy_parser is not None:
            self.abort(REFUSED)
            return
        if self.hello_parser is not None:
            self.hello_parser = None
            self._route_and_connect()

    # -- choosing and connecting ----------------------------------------------------------------

    def _route_and_connect(self) -> None:
        snapshot = self.ctx.source.snapshot
        config = self.ctx.config
        if config.routes:
            routes = snapshot.sni_routes.get(self.ctx.name)
            found = routes.match(self.server_name) if routes is not None else None
            if found is None:
                log.info(
                    "listener %s: no route for server name %r from %s",
                    self.ctx.name,
                    self.server_name,
                    self.client[0],
                )
                self.abort(REFUSED)
                return
            self.route, pool_name = found
        else:
            pool_name = config.pool or ""
        self.pool = snapshot.pools.get(pool_name)
        self.state = _CONNECTING
        self._attempt()

    def _attempt(self) -> None:
        pool = self.pool
        if pool is None:
            self.abort(CONNECT_FAILED)
            return
        affinity = pool.affinity
        if affinity is not None and not self.tried:
            backend, _, _ = affinity.pick(pool.balancer, self.pick_ctx, None, self.client[0])
        else:
            backend = pool.balancer.pick(self.pick_ctx, self.tried)
        if backend is None or backend in self.tried:
            self.abort(CONNECT_FAILED)
            return
        self.backend = backend
        self.tried.append(backend)
        loop = self.ctx.loop
        started = time.perf_counter()
        task = loop.create_task(
            loop.create_connection(lambda: TcpUpstream(self, backend), backend.host, backend.port)
        )
        timer = loop.call_later(pool.connect_timeout_s, task.cancel)
        task.add_done_callback(lambda t: self._on_connected(t, timer, backend, pool, started))

    def _on_connected(
        self,
        task: asyncio.Task[tuple[asyncio.BaseTransport, TcpUpstream]],
        timer: asyncio.TimerHandle,
        backend: BackendState,
        pool: PoolRuntime,
        started: float,
    ) -> None:
        timer.cancel()
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            error = connect_error(exc or TimeoutError(), backend.address, pool.connect_timeout_s)
            detail = error.detail
            self.ctx.source.report_failure(backend, detail)
            if self.state != _CONNECTING:
                return  # the client went away meanwhile
            if len(self.tried) < pool.attempts:
                self._attempt()
            else:
                log.info(
                    "listener %s: %s: every attempt failed, last: %s",
                    self.ctx.name,
                    self.client[0],
                    detail,
                )
                self.abort(CONNECT_FAILED)
            return
        upstream = task.result()[1]
        if self.state != _CONNECTING:
            upstream.close()
            return
        self.connect_ms = (time.perf_counter() - started) * 1000
        backend.consecutive_failures = 0
        self.upstream = upstream
        self.state = _RELAYING
        pieces = []
        if pool.send_proxy == "v2":
            pieces.append(encode_v2(self.client, self.local))
        elif pool.send_proxy == "v1":
            pieces.append(encode_v1(self.client, self.local))
        pieces.extend(self.held)
        self.held = []
        self.held_bytes = 0
        if pieces and upstream.transport is not None:
            upstream.transport.writelines(pieces)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        if self.client_eof:
            upstream.write_eof()

    def _hold(self, data: bytes) -> None:
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > HOLD_LIMIT_BYTES and self.transport is not None:
            self.transport.pause_reading()

    # -- endings -------------------------------------------------------------------------------

    def on_backend_eof(self) -> bool:
        """The backend half-closed: pass it on; True keeps the backend's transport open."""
        self.backend_eof = True
        if not self.client_eof:
            self.close_reason = self.close_reason or BACKEND  # the backend ended first
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        if self.client_eof:
            self.close_reason = self.close_reason or BACKEND
            if transport is not None:
                transport.close()
            return False
        return True

    def on_backend_lost(self, exc: Exception | None) -> None:
        self.upstream = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if exc is not None:
            self.close_reason = self.close_reason or RESET
            reset(transport)  # a reset from the backend reaches the client as a reset
        else:
            self.close_reason = self.close_reason or BACKEND
            transport.close()

    def abort(self, reason: str, rst: bool = True) -> None:
        """End both sides now: with a reset (refused, failed), or a plain close (timeout)."""
        self.close_reason = self.close_reason or reason
        self.state = _DONE
        if self.upstream is not None:
            if rst:
                self.upstream.reset()
            else:
                self.upstream.close()
        if self.transport is not None:
            if rst:
                reset(self.transport)
            else:
                self.transport.close()

    def _finish(self, reason: str) -> None:
        """The client connection is gone: count, log one line, let a waiting one in."""
        if self._finished:
            return
        self._finished = True
        self.state = _DONE
        ctx = self.ctx
        ctx.connections.discard(self)
        if self in ctx.waiting:
            ctx.waiting.remove(self)
        elif ctx.waiting and self._admitted:
            ctx.waiting.popleft().admit()  # a served connection ended: the next may come in
        if self.watchdog is not None:
            self.watchdog.stop()
        stats = ctx.stats
        stats.closed += 1
        if reason == REFUSED:
            stats.refused += 1
        stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
        stats.bytes_in += self.bytes_in
        stats.bytes_out += self.bytes_out
        backend = self.backend
        if backend is not None:
            backend.bytes_out += self.bytes_in
            backend.bytes_in += self.bytes_out
        access_log = ctx.access_log
        if access_log is not None:
            access_log.log_record(
                {
                    "listener": ctx.name,
                    "client": self.client[0],
                    "server_name": self.server_name,
                    "route": self.route or None,
                    "pool": self.pool.name if self.pool is not None else None,
                    "backend": backend.address if backend is not None else None,
                    "attempts": len(self.tried),
                    "bytes_in": self.bytes_in,
                    "bytes_out": self.bytes_out,
                    "connect_ms": round(self.connect_ms, 3),
                    "duration_ms": round((time.perf_counter() - self.started_at) * 1000, 3),
                    "close": reason,
                }
            )

    def _check_timeouts(self) -> bool:
        if self.state == _DONE:
            return False
        total = self.bytes_in + self.bytes_out
        if total != self._last_bytes:
            self._last_bytes = total
            self._quiet = 0
            return True
        self._quiet += 1
        timeouts = self.ctx.config.timeouts
        period = self.watchdog.period_s if self.watchdog is not None else 1.0
        if self.state == _HANDSHAKE:
            limit = timeouts.handshake
        elif self.client_eof != self.backend_eof:
            limit = timeouts.half_closed  # one side is done: do not wait an hour for the other
        else:
            limit = timeouts.idle
        if self.state == _CONNECTING:
            return True  # the connect timeout owns this wait
        if self._quiet >= periods(limit, period):
            self.abort(TIMEOUT, rst=False)  # idle: a plain close, nothing went wrong
            return False
        return True


class TcpUpstream(asyncio.BufferedProtocol):
    """The backend side: relays to its downstream, and tells it about ends and pauses."""

    __slots__ = ("down", "backend", "transport", "_closed", "_paused")

    def __init__(self, down: TcpDownstream, backend: BackendState) -> None:
        self.down = down
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self._closed = False
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.backend.active_connections += 1
        self.backend.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.backend.active_connections -= 1
        self.backend.live.discard(self)
        self.down.on_backend_lost(exc)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        down = self.down
        down.bytes_out += nbytes
        transport = down.transport
        if transport is not None and not transport.is_closing():
            transport.write(_READ_BUFFER[:nbytes])

    def eof_received(self) -> bool:
        return self.down.on_backend_eof()

    def pause_writing(self) -> None:
        transport = self.down.transport
        if transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self.down.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self._closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self._closed:
            self._paused = False
            self.transport.resume_reading()

    def write_eof(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def reset(self) -> None:
        if self.transport is not None:
            reset(self.transport)

    def terminate(self, reason: str) -> None:
        """Cut the relay for the control plane (a drain deadline passed)."""
        self.down.close_reason = self.down.close_reason or reason
        self.reset()


def reset(transport: asyncio.Transport) -> None:
    """Close with a TCP RST, not a FIN: abort() alone closes gracefully at the socket level,
    which would turn a peer's reset into a clean close on the other side."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


_LINGER_RESET = struct.pack("ii", 1, 0)  # linger on, 0 s: close() sends RST


def describe_connections(ctx: TcpListenerContext) -> dict[str, Any]:
    """A tcp listener's counters, for the admin API and metrics."""
    stats = ctx.stats
    return {
        "listener": ctx.name,
        "active": len(ctx.connections),
        "waiting": len(ctx.waiting),
        "opened": stats.opened,
        "closed": stats.closed,
        "refused": stats.refused,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "close_reasons": dict(stats.reasons),
    }
