"""One request's journey: route, pick, connect or reuse, forward, retry, answer.

The exchange sits between the client connection that received the request and the backend
connection that carries it. It owns the retry rules (ARCHITECTURE.md: a connect failure is
retried for any method on another backend; a failure after sending only for idempotent methods
whose body is still held), the request body held for a retry, and the response framing towards
the client. It knows nothing of sockets beyond the two protocol objects it talks to.

This is the hot path: the common request (a reused backend connection, a head forwarded as sent,
a response with a Content-Length) runs through `start` and `on_response_*` without allocating
more than the head it sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from evenflow.core.backend import BackendState
from evenflow.core.errors import BodyTooLarge, NoBackend, NoRoute, ProxyError, connect_error
from evenflow.core.request import RequestHead
from evenflow.observability.tracing import (
    SAMPLED,
    continued_trace,
    new_trace,
    traceparent,
)
from evenflow.proxy.http1 import heads
from evenflow.proxy.http1.framing import BODY_CHUNKED, BODY_NONE, BODY_RAW
from evenflow.proxy.http1.response_head import (
    BACKEND_CLOSES,
    CHUNKED,
    CONNECTION_NAMES_OTHERS,
    HAS_LENGTH,
    HOP_SEEN,
    KEEP_ALIVE_ONLY,
    parse_header_lines,
    strip_hop_by_hop,
)
from evenflow.proxy.http1.upstream import UpstreamConnection

if TYPE_CHECKING:
    from evenflow.proxy.http1.downstream import DownstreamConnection
    from evenflow.proxy.tunnel import Tunnel
    from evenflow.routing.table import CompiledRoute
    from evenflow.runtime.snapshot import PoolRuntime

log = logging.getLogger(__name__)

# Request body bytes held while no backend connection is ready yet; past it the client is
# paused (backpressure), so a slow backend never makes evenflow hold a large upload.
HOLD_LIMIT_BYTES: Final = 256 * 1024
# Body bytes kept after sending, so an idempotent request can be replayed on another backend.
REPLAY_LIMIT_BYTES: Final = 64 * 1024


_BODILESS_STATUS: Final = frozenset((204, 304))

# a static in compiled code: an imported name is a module dictionary lookup per call
_perf_counter: Final = time.perf_counter


class Exchange:
    __slots__ = (
        "down",
        "req",
        "raw_head",
        "host_raw",
        "request_id",
        "request_id_given",
        "trace_id",
        "trace_span",
        "trace_flags",
        "hash_key",
        "http10",
        "chunked_request",
        "keep_alive",
        "plain",
        "route",
        "pool",
        "backend",
        "upstream",
        "attempts",
        "tried",
        "failures",
        "held",
        "held_bytes",
        "replayable",
        "request_done",
        "response_started",
        "response_done",
        "close_after",
        "reuse_upstream",
        "body_mode",
        "status",
        "bytes_in",
        "bytes_out",
        "started_at",
        "cancelled",
        "last_error",
        "pinned",
        "sticky",
        "ttfb",
        "connect_s",
        "upgrade",
    )

    def __init__(
        self,
        down: DownstreamConnection,
        req: RequestHead,
        raw_head: bytes | None,
        host_raw: bytes,
        request_id: bytes | None,
        traceparent_in: bytes | None,
        http10: bool,
        chunked_request: bool,
        keep_alive: bool,
    ) -> None:
        self.down = down
        self.req = req
        # the client's head as sent, when it can be forwarded with only additions; None when
        # something in it must change (hop-by-hop fields, forwarding headers, version, target)
        self.raw_head = raw_head
        self.host_raw = host_raw
        # the client's X-Request-Id (forwarded as it came), or one evenflow made up
        if request_id is None:
            self.request_id = down.ctx.next_request_id()
            self.request_id_given = False
        else:
            self.request_id = request_id
            self.request_id_given = True
        # W3C trace context: the client's trace continues with evenflow's span, or one starts
        # (the traceparent sent on is joined into the head from `00-`, the trace id, and
        # evenflow's span and the flags each with their dash)
        if not down.tracing:
            self.trace_id = self.trace_span = self.trace_flags = b""
        elif traceparent_in is None:
            self.trace_id, self.trace_span = new_trace()
            self.trace_flags = SAMPLED
        else:
            self.trace_id, self.trace_span, self.trace_flags = continued_trace(traceparent_in)
        self.http10 = http10
        self.chunked_request = chunked_request
        self.keep_alive = keep_alive  # the client wants the connection kept open
        # nothing about this request can change its response's head or framing: a response
        # with a Content-Length may then be forwarded exactly as received (set by start)
        self.plain = False
        self.route: CompiledRoute | None = None
        self.pool: PoolRuntime | None = None
        self.backend: BackendState | None = None
        self.upstream: UpstreamConnection | None = None
        self.attempts = 0
        self.tried: list[BackendState] | None = None  # every backend tried, once one failed
        self.failures: list[str] | None = None  # "backend: reason" for each failed attempt
        # request body in upstream framing: waiting for a connection, or kept for a replay
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        self.replayable = True  # `held` still has every body byte sent so far
        self.request_done = False  # the client finished sending the request
        self.response_started = False  # the client has seen (part of) the response
        self.response_done = False
        self.close_after = False  # the client connection closes after this response
        self.reuse_upstream = True  # the backend connection may carry another request after
        self.body_mode = BODY_NONE
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.started_at = _perf_counter()
        self.cancelled = False
        self.last_error: ProxyError | None = None
        self.pinned: BackendState | None = None  # the backend a sticky cookie or table named
        self.sticky = ""  # "hit", "miss", "repin", or "" when the pool does not stick
        self.hash_key: bytes | None = None  # what the pool's hashing keyed on (decision log)
        self.ttfb = 0.0  # seconds from the request head to the response head
        self.connect_s = 0.0  # seconds the last new backend connection took (0: reused)
        # the protocol a WebSocket handshake asks to switch to (b"websocket"), forwarded with
        # its Connection: upgrade; set by the client connection for GETs that ask for it
        self.upgrade: bytes | None = None

    # -- the request side ------------------------------------------------------------------

    def start(self) -> None:
        """Route, pick and send; called once this exchange is its connection's current one."""
        down = self.down
        snapshot = down.source.snapshot
        listener = snapshot.listeners.get(down.listener_name)
        req = self.req
        route = listener.routes.match(req) if listener is not None else None
        if route is None:
            self.fail(NoRoute(f"no route for {req.method} {req.host}{req.path}"))
            return
        self.route = route
        pool = self.pool = snapshot.pools[route.single_pool or route.pick_pool()]
        affinity = pool.affinity
        self.plain = (
            self.keep_alive
            and not self.http10
            and req.method != "HEAD"
            and route.response_rewrite is None
            and (affinity is None or affinity.cookie is None)
            and down.ctx.trace_header is None
            and self.upgrade is None
        )
        # the first attempt, inlined for the common case: a parked connection to the pick
        if affinity is None:
            backend = pool.balancer.pick(down.pick_ctx)
        else:
            backend, self.pinned, self.sticky = affinity.pick(
                pool.balancer, down.pick_ctx, req, down.client_ip
            )
            self.hash_key = down.pick_ctx.hash_key
        if backend is not None and backend.idle:
            conn: UpstreamConnection = backend.idle.pop()
            if conn.is_usable():
                self.backend = backend
                self.attempts = 1
                backend.in_flight += 1
                backend.requests_total += 1
                self._send_on(conn)
                return
            backend.idle.append(conn)  # _attempt looks again and drops the dead ones
        self._attempt(backend)

    def on_request_body(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.response_done or self.cancelled:
            return  # answered already (an error, or an early response): drop the rest
        limit = self.down.max_body_bytes
        if limit is not None and self.bytes_in > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        pieces = heads.chunk(data) if self.chunked_request else [data]
        self._forward_body(pieces, len(data))

    def on_request_complete(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """The end of a chunked request body (other requests just set `request_done`)."""
        self.request_done = True
        if not (self.response_done or self.cancelled):
            self._forward_body([heads.last_chunk(trailers)], 0)

    def _forward_body(self, pieces: list[bytes], size: int) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.write(pieces)
            if self.replayable:
                self._hold(pieces, size)
                if self.held_bytes > REPLAY_LIMIT_BYTES:
                    self.replayable = False
                    self.held = None
            return
        self._hold(pieces, size)
        if self.held_bytes > HOLD_LIMIT_BYTES:
            self.down.pause_reading_for_body()

    def _hold(self, pieces: list[bytes], size: int) -> None:
        if self.held is None:
            self.held = []
        self.held.extend(pieces)
        self.held_bytes += size

    # -- attempts ----------------------------------------------------------------------------

    def _attempt(self, picked: BackendState | None = None) -> None:
        pool = self.pool
        assert pool is not None
        tried = self.tried
        backend = picked or pool.balancer.pick(self.down.pick_ctx, tried or ())
        if backend is None:
            self.fail(NoBackend(f"pool {pool.name} has no usable backend"))
            return
        if tried and backend in tried:
            # a retry goes to another backend or not at all (as nginx): the same one just failed
            self._give_up()
            return
        self.backend = backend
        self.attempts += 1
        if tried is not None:
            tried.append(backend)
        backend.in_flight += 1
        backend.requests_total += 1
        idle = backend.idle
        while idle:
            conn: UpstreamConnection = idle.pop()
            if conn.is_usable():
                self._send_on(conn)
                return
        loop = self.down.loop
        task = loop.create_task(
            pool.connect(
                loop,
                lambda: UpstreamConnection(
                    backend, loop, pool.response_timeout_s, pool.idle_timeout_s, pool.max_idle
                ),
                backend,
            )
        )
        timer = loop.call_later(pool.connect_timeout_s, task.cancel)
        started = _perf_counter()
        task.add_done_callback(lambda t: self._on_connected(t, timer, backend, pool, started))

    def _on_connected(
        self,
        task: asyncio.Task[tuple[asyncio.BaseTransport, UpstreamConnection]],
        timer: asyncio.TimerHandle,
        backend: BackendState,
        pool: PoolRuntime,
        started: float,
    ) -> None:
        timer.cancel()
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            backend.in_flight -= 1
            error = connect_error(exc or TimeoutError(), backend.address, pool.connect_timeout_s)
            self.down.source.report_failure(backend, error.detail)
            if not self.cancelled:
                self._retry_or_fail(error, sent=False)
            return
        conn = task.result()[1]
        self.connect_s = _perf_counter() - started
        self.down.ctx.stats.backend_series(pool.name, backend.address).connect.observe(
            self.connect_s
        )
        if self.cancelled:
            backend.in_flight -= 1
            conn.release(reusable=True)
            return
        self._send_on(conn)

    def _send_on(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        raw = self.raw_head
        down = self.down
        if down.write_paused:
            conn.pause_reading()  # the client stopped reading before this backend was ready
        route = self.route
        if raw is not None and route is not None and route.request_rewrite is None:
            # the client's head as sent, with evenflow's lines spliced in before the blank line
            if self.trace_id and not self.request_id_given:  # the common case: one copy
                # (compiled, a format of bytes is one copy; a join of more than ten pieces
                # allocates an array for them)
                head = (
                    b"%b%bx-forwarded-host: %b\r\nx-request-id: %b"
                    b"\r\ntraceparent: 00-%b%b%b\r\n\r\n"
                    % (
                        raw[:-2],  # the client's head less its blank line
                        down.forwarded_lines,
                        self.host_raw,
                        self.request_id,
                        self.trace_id,
                        self.trace_span,
                        self.trace_flags,
                    )
                )
            else:
                lines = [raw[:-2], down.forwarded_lines, b"x-forwarded-host: ", self.host_raw]
                if not self.request_id_given:
                    lines += (b"\r\nx-request-id: ", self.request_id)
                if self.trace_id:
                    lines += (
                        b"\r\ntraceparent: 00-",
                        self.trace_id,
                        self.trace_span,
                        self.trace_flags,
                    )
                lines.append(b"\r\n\r\n")
                head = b"".join(lines)
        else:
            head = self._rebuilt_request_head()
        held = self.held
        conn.send(self, head, held, self.req.method == "HEAD")
        if held:
            if self.held_bytes > REPLAY_LIMIT_BYTES:
                self.replayable = False
                self.held = None
            down.resume_reading_for_body()

    def _retry_or_fail(self, error: ProxyError, sent: bool) -> None:
        backend = self.backend
        pool = self.pool
        assert backend is not None and pool is not None
        self.add_failure(f"{backend.address}: {error.detail}")
        self.upstream = None
        if self.tried is None:
            self.tried = [backend]
        may_retry = (
            self.attempts < pool.attempts
            and not self.response_started
            and (error.retry_safe or (self.replayable and self._idempotent()))
            and not (sent and not self.replayable)
        )
        self.last_error = error
        if may_retry and self.sticky == "hit" and pool.affinity is not None:
            # the pinned backend failed: the retry moves the session, which is a re-pin
            self.sticky = "repin"
            tracking = pool.affinity.tracking
            tracking.sticky_hits -= 1
            tracking.sticky_repins += 1
        if may_retry:
            retries = self.down.ctx.stats.backend_series(pool.name, backend.address).retries
            kind = error.kind
            retries[kind] = retries.get(kind, 0) + 1
            self._attempt()
        else:
            self.fail(error)

    def _give_up(self) -> None:
        error = self.last_error
        self.fail(error if error is not None else NoBackend("no backend left to retry on"))

    def add_failure(self, text: str) -> None:
        """Note why an attempt failed (the access log shows every one)."""
        if self.failures is None:
            self.failures = []
        self.failures.append(text)

    def _idempotent(self) -> bool:
        return self.req.method in heads.IDEMPOTENT_METHODS

    # -- the response side -------------------------------------------------------------------

    def on_interim_response(self, raw: bytes) -> None:
        if not self.http10 and not self.response_started:
            self.down.write(strip_hop_by_hop(raw))

    def on_response_head(self, status: int, raw: bytes, flags: int) -> bytes:
        """The head to send the client (`raw` itself when unchanged); sets `body_mode`."""
        self.ttfb = _perf_counter() - self.started_at
        self.status = status
        self.response_started = True
        down = self.down
        if status == 101:
            # the handshake's answer: Connection and Upgrade go through as the backend sent
            self.body_mode = BODY_NONE
            return raw
        if (
            self.plain
            and flags & HAS_LENGTH
            and not flags & ~_FORWARDED_AS_IS
            and status != 204
            and status != 304
            and self.request_done
            and not self.close_after
            and not down.closing
        ):
            self.body_mode = BODY_RAW  # the common response: nothing to change
            return raw
        close = self.close_after = (
            self.close_after or down.closing or not self.request_done or not self.keep_alive
        )
        if self.req.method == "HEAD" or status in _BODILESS_STATUS or status < 200:
            self.body_mode = BODY_NONE
        elif flags & CHUNKED:
            if self.http10:
                # an HTTP/1.0 client cannot read chunks: raw body, delimited by closing
                self.body_mode = BODY_RAW
                close = self.close_after = True
                flags |= CONNECTION_NAMES_OTHERS  # rebuild: drop transfer-encoding
            else:
                self.body_mode = BODY_CHUNKED
        elif flags & HAS_LENGTH:
            self.body_mode = BODY_RAW
        elif self.http10:
            self.body_mode = BODY_RAW
            close = self.close_after = True
        else:
            # RFC 9112 §6.3: no length means "until close"; to keep the client connection, chunk
            self.body_mode = BODY_CHUNKED
            flags |= _ADD_CHUNKED
        route = self.route
        if flags & CONNECTION_NAMES_OTHERS or (route is not None and route.response_rewrite):
            raw = self._rebuilt_response_head(status, raw)
        elif flags & HOP_SEEN or (flags & KEEP_ALIVE_ONLY and (close or self.http10)):
            # RFC 9110 §7.6.1: a lone "Connection: keep-alive" may stay as evenflow's own
            # option when the client connection is kept; anything else hop-by-hop goes
            raw = strip_hop_by_hop(raw)
        if close:
            raw = raw[:-2] + (
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                if flags & _ADD_CHUNKED
                else b"connection: close\r\n\r\n"
            )
        elif self.http10:
            raw = raw[:-2] + b"connection: keep-alive\r\n\r\n"
        elif flags & _ADD_CHUNKED:
            raw = raw[:-2] + b"transfer-encoding: chunked\r\n\r\n"
        pool = self.pool
        affinity = pool.affinity if pool is not None else None
        backend = self.backend
        if (
            affinity is not None
            and affinity.cookie is not None
            and backend is not None
            and backend is not self.pinned  # a new or moved session: (re)issue the cookie
        ):
            raw = raw[:-2] + affinity.cookie.set_cookie(backend) + b"\r\n"
        trace_header = down.ctx.trace_header
        if trace_header is not None and self.trace_id:
            raw = raw[:-2] + b"%s: %s\r\n\r\n" % (trace_header.encode(), self.trace_id)
        return raw

    def on_response_body(self, data: bytes) -> None:
        self.bytes_out += len(data)
        mode = self.body_mode
        if mode == BODY_RAW:
            self.down.write(data)
        elif mode == BODY_CHUNKED:
            self.down.writelines(heads.chunk(data))

    def on_response_complete(
        self, conn: UpstreamConnection, trailers: list[tuple[bytes, bytes]], reusable: bool
    ) -> None:
        if self.body_mode == BODY_CHUNKED:
            self.down.write(heads.last_chunk(trailers))
        backend = self.backend
        if backend is not None:
            backend.in_flight -= 1
            if self.status < 500:
                backend.consecutive_failures = 0  # passive detection counts failures in a row
            elif self.pool is not None and self.pool.count_5xx:
                self.down.source.report_failure(backend, f"status {self.status}")
        self.upstream = None
        self.response_done = True
        # a backend connection may carry the next request only if this one was sent in full
        conn.release(reusable and self.request_done and self.reuse_upstream)
        self.down.on_exchange_done(self)

    def on_upstream_failed(
        self, conn: UpstreamConnection, error: ProxyError, got_bytes: bool
    ) -> None:
        if self.upstream is not conn:
            return
        backend = self.backend
        stale = conn.reused and not got_bytes
        if backend is not None:
            backend.in_flight -= 1
            if not stale:  # a backend closing an idle keep-alive connection is no failure
                self.down.source.report_failure(backend, error.detail)
        if self.response_started:
            # the client has part of the response: the only honest signal left is to cut it
            self.add_failure(f"{backend.address if backend else '?'}: {error.detail}")
            self.upstream = None
            self.response_done = True
            self.down.abort_after(self)
            return
        if stale and self.replayable and self._idempotent():
            error.retry_safe = True  # RFC 9112 §9.3.1: a reused connection may have been closed
        self._retry_or_fail(error, sent=True)

    def on_switching_protocols(self, backend_transport: asyncio.Transport, rest: bytes) -> None:
        """The backend answered 101: from now on both connections are one byte tunnel."""
        backend = self.backend
        assert backend is not None
        self.upstream = None
        tunnel = self.down.start_tunnel(self, backend_transport, backend)
        if tunnel is None:
            backend_transport.abort()  # the client left meanwhile
            backend.in_flight -= 1
            backend.active_connections -= 1
            return
        if rest:
            tunnel.bytes_down += len(rest)
            tunnel.client.transport.write(rest)

    def on_tunnel_end(self, tunnel: Tunnel, reason: str) -> None:
        """The upgraded connection is over: it counted as one long request, now it ends."""
        backend = self.backend
        if backend is not None:
            backend.in_flight -= 1
            backend.active_connections -= 1
        self.bytes_in += tunnel.bytes_up
        self.bytes_out += tunnel.bytes_down
        if reason in ("timeout", "reset", "drain"):
            self.add_failure(f"tunnel ended: {reason}")
        self.response_done = True

    def on_upstream_write_paused(self) -> None:
        self.down.pause_reading_for_backpressure()

    def on_upstream_write_resumed(self) -> None:
        self.down.resume_reading_for_backpressure()

    def pause_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- endings -----------------------------------------------------------------------------

    def fail(self, error: ProxyError) -> None:
        """Answer the client with `error`'s status (nothing of a response was sent yet)."""
        self.status = error.status
        self.response_done = True
        if not self.request_done:
            self.close_after = True
        self.down.answer_error(self, error)

    def cancel(self) -> None:
        """The client went away: stop whatever is in progress and free the backend."""
        if self.cancelled:
            return
        self.cancelled = True
        conn = self.upstream
        if conn is not None and not self.response_done:
            if self.backend is not None:
                self.backend.in_flight -= 1
            self.upstream = None
            conn.abort()

    # -- heads -------------------------------------------------------------------------------

    def _rebuilt_request_head(self) -> bytes:
        req = self.req
        named = _connection_named(req.headers)
        xff: list[bytes] = []
        kept: list[tuple[bytes, bytes]] = []
        for name, value in req.headers:
            if name == b"x-forwarded-for":
                xff.append(value)
            elif (
                name == b"transfer-encoding"
                or name == b"host"
                or not (
                    name in heads.HOP_BY_HOP
                    or name in named
                    or name in heads.FORWARDED_SET_BY_US
                    or name == self.down.ctx.client_cert_header
                    or name.startswith(b"proxy-")
                )
            ):
                kept.append((name, value))
        if not any(name == b"host" for name, _ in kept):
            kept.insert(0, (b"host", self.host_raw))
        elif self.host_raw:
            # RFC 9112 §3.2.2: an absolute-form target's authority replaces Host
            kept = [(n, self.host_raw if n == b"host" else v) for n, v in kept]
        if self.route is not None and self.route.request_rewrite is not None:
            kept = self.route.request_rewrite.apply(kept)
        xff.append(self.down.client_ip.encode("latin-1"))
        forwarded = [
            (b"x-forwarded-for", b", ".join(xff)),
            (b"x-forwarded-proto", self.down.scheme_bytes),
            (b"x-forwarded-host", self.host_raw),
            (b"via", (b"1.0 " if self.http10 else b"1.1 ") + b"evenflow"),
        ]
        cert_header = self.down.ctx.client_cert_header
        if cert_header is not None and self.down.cert_subject:
            forwarded.append((cert_header, self.down.cert_subject))
        if not self.request_id_given:
            forwarded.append((b"x-request-id", self.request_id))
        if self.upgrade:
            # RFC 9110 §7.8: hop-by-hop, but the handshake needs them on every hop
            forwarded += [(b"connection", b"upgrade"), (b"upgrade", self.upgrade)]
        if self.trace_id:
            kept = [(n, v) for n, v in kept if n != b"traceparent"]
            forwarded.append(
                (b"traceparent", traceparent(self.trace_id, self.trace_span, self.trace_flags))
            )
        line = b"%s %s HTTP/1.1\r\n" % (req.method.encode("latin-1"), req.target.encode("latin-1"))
        return b"".join(
            (line, heads.serialize_headers(kept), heads.serialize_headers(forwarded), b"\r\n")
        )

    def _rebuilt_response_head(self, status: int, raw: bytes) -> bytes:
        headers = parse_header_lines(raw)
        named = _connection_named(headers)
        keep_te = self.body_mode == BODY_CHUNKED
        kept = [
            (name, value)
            for name, value in headers
            if not (
                (name in heads.HOP_BY_HOP and not (name == b"transfer-encoding" and keep_te))
                or name in named
                or name.startswith(b"proxy-")
            )
        ]
        if self.route is not None and self.route.response_rewrite is not None:
            kept = self.route.response_rewrite.apply(kept)
        line = raw[: raw.find(b"\r\n")]
        reason = line.split(b" ", 2)[2] if line.count(b" ") >= 2 else b""
        return heads.status_line(status, reason) + heads.serialize_headers(kept) + b"\r\n"


# response heads with only these flags (a Content-Length, "Connection: keep-alive") need no
# change for a plain request; HAS_LENGTH must be among them (see on_response_head)
_FORWARDED_AS_IS: Final = HAS_LENGTH | KEEP_ALIVE_ONLY | BACKEND_CLOSES

# on_response_head: the response had no framing and is re-framed as chunks
_ADD_CHUNKED: Final = 1 << 16

# Connection may not be used to strip what framing and routing depend on (a known way to make a
# proxy drop Content-Length or Host on the next hop).
_NEVER_DROPPED_BY_CONNECTION: Final = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"close", b"keep-alive")
)


def _connection_named(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The fields a Connection header names as hop-by-hop, minus those that must stay."""
    named = heads.connection_tokens([value for name, value in headers if name == b"connection"])
    return named - _NEVER_DROPPED_BY_CONNECTION
