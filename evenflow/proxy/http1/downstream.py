"""A client's HTTP/1.1 connection: parse requests, hand each to an Exchange, answer in order.

The parser (llhttp) refuses ambiguous framing itself; on top of it this module refuses what a
proxy must not pass on (RFC 9112 §6.1, §6.3: several or unknown transfer codings; a missing or
repeated Host) and bounds what a client can make evenflow hold: header bytes, header time,
pipelined requests (reading pauses while one waits), body bytes held before a backend is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import httptools

from evenflow.balancing.base import PickContext
from evenflow.core import grpc
from evenflow.core.backend import BackendState
from evenflow.core.errors import (
    BadRequest,
    BodyTooLarge,
    HeadersTooLarge,
    ProxyError,
    RequestTimeout,
    VersionNotSupported,
)
from evenflow.core.request import RequestHead
from evenflow.observability.stats import Registry, RequestStats
from evenflow.proxy.http1 import heads
from evenflow.proxy.http1.exchange import Exchange
from evenflow.proxy.tunnel import Tunnel
from evenflow.proxy.watchdog import Watchdog, periods

if TYPE_CHECKING:
    from evenflow.observability.access_log import AccessLog
    from evenflow.proxy.http2.guard import Http2Stats
    from evenflow.runtime.snapshot import Snapshot

log = logging.getLogger(__name__)


# nginx's status for a request whose client closed the connection before it was answered;
# only logged and counted, never sent
CLIENT_CLOSED_REQUEST: Final = 499

# a static in compiled code: time.perf_counter is a module attribute lookup per call
_perf_counter: Final = time.perf_counter

_HEX: Final = [b"%x" % number for number in range(0x100)]  # request ids' digits
_HEX_PAIRS: Final = [b"%02x" % number for number in range(0x100)]


class SnapshotSource(Protocol):
    """What the data plane needs of the control plane: the current snapshot, and somewhere
    to report failures seen on real traffic (passive health)."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def stats(self) -> Registry: ...

    def report_failure(self, backend: BackendState, reason: str) -> None: ...


class ClientConnection(Protocol):
    """A client connection as its listener sees it (HTTP/1.1 here, or HTTP/2 after ALPN or the
    h2c preface): shutdown closes it when idle, or aborts its transport; max_connections holds
    it unread until `admit`."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    def close_when_idle(self) -> None: ...

    def admit(self) -> None: ...


class HttpListenerContext:
    """What every connection of one HTTP listener shares."""

    __slots__ = (
        "name",
        "source",
        "loop",
        "connections",
        "waiting",
        "access_log",
        "scheme",
        "closing",
        "stats",
        "unrouted",
        "opened",
        "tracing",
        "trace_header",
        "count_requests",
        "client_cert_header",
        "http2",
        "_rid_prefix",
        "_rid_counter",
        "_rid_upper",
    )

    def __init__(
        self,
        name: str,
        source: SnapshotSource,
        loop: asyncio.AbstractEventLoop,
        access_log: AccessLog | None,
        scheme: str = "http",
    ) -> None:
        import os

        self.name = name
        self.source = source
        self.loop = loop
        self.connections: set[ClientConnection] = set()
        # accepted past max_connections, not read yet: served in order as others close
        self.waiting: deque[ClientConnection] = deque()
        self.access_log = access_log
        self.scheme = scheme
        self.closing = False
        self.stats: Registry = source.stats
        # metric series of requests no route matched
        self.unrouted: dict[object, RequestStats] = {}
        self.opened = 0  # client connections accepted
        tracing = source.snapshot.config.tracing
        self.tracing = tracing.enabled
        self.trace_header = tracing.response_header
        self.count_requests = source.snapshot.config.metrics.requests
        # mTLS: the header carrying the verified client certificate's subject (set with TLS)
        self.client_cert_header: bytes | None = None
        self.http2: Http2Stats | None = None  # made by the first HTTP/2 connection
        # request ids: a random per-process prefix and a counter; unique, cheap, not secret
        self._rid_prefix = os.urandom(6).hex().encode() + b"-"
        self._rid_counter = 0
        self._rid_upper = self._rid_prefix  # the prefix and the counter's hex but its last two

    def next_request_id(self) -> bytes:
        """The prefix and the counter in hex. Formatted `b"%x" % counter` cost ~900
        instructions per request: the digits but the last two change once in 256 ids, and the
        last two come from a table."""
        counter = self._rid_counter + 1
        self._rid_counter = counter
        if counter < 0x100:
            return self._rid_prefix + _HEX[counter]
        last_two = counter & 0xFF
        if last_two == 0:
            self._rid_upper = self._rid_prefix + b"%x" % (counter >> 8)
        return self._rid_upper + _HEX_PAIRS[last_two]

    def close_idle(self) -> None:
        """Shutdown step: stop keep-alive; idle connections close now, busy ones after."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_when_idle()


# reasons reading from the client is paused (a bit each; reading resumes when none is left)
_PAUSE_BACKPRESSURE: Final = 1  # the backend connection's write buffer is full
_PAUSE_HOLD: Final = 2  # too much body held while no backend is ready
_PAUSE_QUEUE: Final = 4  # a pipelined request waits for the current one to be answered

_REQUEST_SPECIAL: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"transfer-encoding",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        b"traceparent",
    )
)
_REBUILD_TRIGGERS: Final = frozenset(
    (
        b"traceparent",  # replaced by evenflow's span
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"upgrade",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    )
)
# Fields a browser sends on most requests that on_header only records: one set lookup, instead
# of the checks for special, proxy- and look-alike names, for each of them
_ORDINARY_FIELDS: Final = frozenset(
    (
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"authorization",
        b"cache-control",
        b"content-type",
        b"cookie",
        b"dnt",
        b"if-modified-since",
        b"if-none-match",
        b"origin",
        b"pragma",
        b"priority",
        b"referer",
        b"sec-ch-ua",
        b"sec-ch-ua-mobile",
        b"sec-ch-ua-platform",
        b"sec-fetch-dest",
        b"sec-fetch-mode",
        b"sec-fetch-site",
        b"sec-fetch-user",
        b"upgrade-insecure-requests",
        b"user-agent",
    )
)


def _spellings(name: bytes) -> tuple[bytes, ...]:
    """How clients commonly write a lowercase field name: as is, Capitalized-Per-Word, and
    with the short words some write all in capitals (DNT, TE, CH, ID)."""
    words = name.split(b"-")
    capitalized = b"-".join([word.capitalize() for word in words])
    shouted = b"-".join(
        [
            word.upper() if word in (b"dnt", b"te", b"ch", b"id") else word.capitalize()
            for word in words
        ]
    )
    return (name, capitalized, shouted)


# The lowercase name (the very object in the sets above) of each field on_header knows, by its
# usual spellings: one dictionary lookup, where lower() is a method call that makes a new
# object, whose hash the set lookups after it must then compute. Other spellings are lowered.
_LOWERCASE: Final = {
    spelling: name
    for name in (b"host", *_ORDINARY_FIELDS, *_REQUEST_SPECIAL)
    for spelling in _spellings(name)
}
# what on_header noticed about the request being parsed
_REBUILD: Final = 1  # a hop-by-hop or forwarding header: the head is rebuilt, not forwarded as sent
_CHUNKED: Final = 2
_HOST_TWICE: Final = 4
_ANCIENT: Final = 8  # HTTP/0.9 or no version
_SEEN: Final = 16  # any header _special_header looks at: its fields are reset for the next request

# RFC 9112 §7: codings a proxy may pass along inside chunked framing (it never decodes them)
_KNOWN_CODINGS: Final = frozenset(
    (b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress", b"identity")
)
# header names that might be read as Transfer-Encoding or Content-Length by a lenient backend
_LOOKALIKE_PREFIXES: Final = frozenset((b"transfe", b"content"))
_SEPARATORS: Final = re.compile(rb"[-_\s.]+")


class ClientOrigin:
    """Who is at the other end of a client connection, as each of its requests tells the
    backend: worked out once per connection, and for HTTP/2 once for all of its streams."""

    __slots__ = ("client_ip", "forwarded_lines", "cert_subject", "special_names", "ordinary_names")

    def __init__(
        self,
        client_ip: str,
        forwarded_lines: bytes,
        cert_subject: bytes,
        special_names: frozenset[bytes],
        ordinary_names: frozenset[bytes],
    ) -> None:
        self.client_ip = client_ip
        # X-Forwarded-For (the client's address alone: its own values go first), -Proto, Via
        # and, with mTLS, the verified subject's header: what a forwarded head gets appended
        self.forwarded_lines = forwarded_lines
        self.cert_subject = cert_subject  # mTLS: the verified client certificate's subject
        self.special_names = special_names  # header names on_header looks at
        self.ordinary_names = ordinary_names  # and those it only records


def client_origin(
    ctx: HttpListenerContext, transport: asyncio.BaseTransport, ssl_object: Any
) -> ClientOrigin:
    """The origin of a connection accepted on `ctx`'s listener (`ssl_object`: its TLS
    connection's ssl.SSLObject, None in clear)."""
    peer = transport.get_extra_info("peername")
    client_ip = peer[0] if isinstance(peer, tuple) else "unknown"
    forwarded_lines = (
        b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nvia: "
        % (client_ip.encode(), ctx.scheme.encode())
        + heads.VIA
        + b"\r\n"
    )
    cert_header = ctx.client_cert_header
    if ssl_object is None or cert_header is None:
        return ClientOrigin(client_ip, forwarded_lines, b"", _REQUEST_SPECIAL, _ORDINARY_FIELDS)
    # mTLS: the verified client's subject goes upstream (and a client's own header of that
    # name never does: see on_header)
    subject = client_subject(ssl_object.getpeercert())
    if subject:
        forwarded_lines += b"%s: %s\r\n" % (cert_header, subject)
    return ClientOrigin(
        client_ip,
        forwarded_lines,
        subject,
        _REQUEST_SPECIAL | {cert_header},
        _ORDINARY_FIELDS - {cert_header},
    )


def client_subject(cert: dict[str, object] | None) -> bytes:
    """A verified client certificate's subject as one header value: "CN=alice,O=Example"."""
    if not cert:
        return b""
    parts = []
    for rdn in cert.get("subject", ()):  # type: ignore[attr-defined]
        for key, value in rdn:
            short = _SUBJECT_KEYS.get(key, key)
            parts.append(f"{short}={value}".replace(",", "\\,"))
    return ",".join(parts).encode("latin-1", "replace")


_SUBJECT_KEYS: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "emailAddress": "emailAddress",
}


def _refuse_lookalike(lname: bytes) -> None:
    """Transfer_Encoding, Content--Length...: some servers normalise such names and would
    frame the body differently than evenflow does, so they are refused (a desync vector)."""
    if _SEPARATORS.sub(b"-", lname) in (b"transfer-encoding", b"content-length"):
        raise BadRequest(f"header name {lname.decode('latin-1')!r} imitates a framing header")


def check_transfer_codings(values: list[bytes], http10: bool) -> None:
    """RFC 9112 §6.1, §6.3: chunked must be the final coding, once; other codings known.
    An HTTP/1.0 request with Transfer-Encoding has faulty framing."""
    if http10:
        raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
    codings = [c.strip().lower() for value in values for c in value.split(b",")]
    codings = [c for c in codings if c]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
        raise BadRequest("Transfer-Encoding must end with chunked, given once")
    unknown = [c for c in codings[:-1] if c not in _KNOWN_CODINGS]
    if unknown:
        raise BadRequest(f"unknown transfer coding {unknown[0].decode('latin-1')!r}")


_METHODS: Final = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
}
_NO_BODY_METHODS: Final = frozenset(("GET", "HEAD"))
_TUNNEL_HOLD_BYTES: Final = 64 * 1024  # client bytes held while a WebSocket handshake is answered
_LINGER_S: Final = 2.0  # after an error, how long unread client bytes are drained before closing
_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        # connection lifetime
        "ctx",
        "loop",
        "source",
        "listener_name",
        "transport",
        "parser",
        "client_ip",
        "pick_ctx",
        "forwarded_lines",
        "cert_subject",
        "scheme_bytes",
        "tracing",
        "watchdog",
        "_begun",
        "_bytes_in",
        "_last_check",
        "_quiet_periods",
        "max_header_bytes",
        "max_body_bytes",
        "header_timeout_s",
        "idle_timeout_s",
        "body_timeout_s",
        "send_timeout_s",
        "closing",
        "is_stream",
        "current",
        "queue",
        "_paused",
        "write_paused",
        "_discard",
        "_final_error",
        "_closed",
        "_write_closed",
        "_linger",
        # the request being parsed
        "_data",
        "_boundary",
        "_in_message",
        "_in_head",
        "_head_bytes",
        "_raw_first",
        "_raw_more",
        "_url",
        "_headers",
        "_host",
        "_special",
        "_content_length",
        "_request_id",
        "_traceparent",
        "_upgrade",
        "_tunnel_bytes",
        "_special_names",
        "_ordinary_names",
        "_origin",
        "_trailers",
        "_receiving",
    )

    def __init__(self, ctx: HttpListenerContext, *, stream: ClientOrigin | None = None) -> None:
        self.ctx = ctx
        # given: this connection serves one HTTP/2 stream over a virtual transport (see
        # proxy/http2/client_stream.py) for the client `stream` describes. The HTTP/2
        # connection is the client connection: it is registered, counted and limited, and its
        # one watchdog runs this one's checks, so thousands of streams cost no timer each
        self.is_stream = stream is not None
        self._origin = stream
        self.loop = ctx.loop
        self.source = ctx.source
        self.listener_name = ctx.name
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # llhttp refuses HTTP/1.2; evenflow checks versions itself (see _old_version)
        self.parser.set_dangerous_leniencies(lenient_version=True)
        self.client_ip = ""
        self.pick_ctx = PickContext()
        self.forwarded_lines = b""
        self.cert_subject = b""  # mTLS: the verified client certificate's subject
        self.scheme_bytes = ctx.scheme.encode()
        self.tracing = ctx.tracing
        self.watchdog: Watchdog | None = None  # made in connection_made, with the timeouts
        self._begun = 0  # requests begun on this connection
        self._bytes_in = 0  # bytes received on this connection
        self._last_check: tuple[str, int] | None = None  # what the previous check saw
        self._quiet_periods = 0  # watchdog periods that saw no progress
        self.closing = False  # no new request after the current one
        self.current: Exchange | None = None  # the exchange being answered
        self.queue: deque[Exchange] = deque()  # pipelined exchanges waiting their turn
        self._paused = 0
        self.write_paused = False  # the client reads slower than evenflow writes
        self._discard = False  # input is ignored: the connection is being closed after an error
        self._final_error: ProxyError | None = None
        self._closed = False
        self._write_closed = False  # we closed (or half-closed) our side: nothing more goes out
        self._linger = False  # on closing, read what the client still sends for a moment
        self._data = b""
        self._boundary = True
        self._in_message = False
        self._in_head = False
        self._head_bytes = 0
        # the head as received, when it can be forwarded as sent: its first read, and any more
        self._raw_first: bytes | None = None
        self._raw_more: list[bytes] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._host: bytes | None = None
        self._special = 0  # _REBUILD | _CHUNKED | _HOST_TWICE
        self._content_length = 0
        self._request_id: bytes | None = None
        self._traceparent: bytes | None = None
        self._upgrade: bytes | None = None
        # bytes a client sent after its WebSocket handshake, before the backend's 101
        self._tunnel_bytes: list[bytes] | None = None
        self._special_names = _REQUEST_SPECIAL  # header names on_header looks at
        self._ordinary_names = _ORDINARY_FIELDS  # and those it only records
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._receiving: Exchange | None = None

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = transport = cast(asyncio.Transport, transport)
        origin = self._origin
        if origin is None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                from evenflow.proxy.http2.downstream import take_over

                self.ctx.opened += 1
                take_over(self.ctx, transport)  # HTTP/2 by ALPN: its own protocol from here
                return
            origin = client_origin(self.ctx, transport, ssl_object)
        self.client_ip = self.pick_ctx.client_ip = origin.client_ip
        self.forwarded_lines = origin.forwarded_lines
        self.cert_subject = origin.cert_subject
        self._special_names = origin.special_names
        self._ordinary_names = origin.ordinary_names
        listener = self.source.snapshot.listeners[self.listener_name]
        self.max_header_bytes = listener.max_header_bytes
        self.max_body_bytes = listener.max_body_bytes
        self.header_timeout_s = listener.header_timeout_s
        self.idle_timeout_s = listener.idle_timeout_s
        self.body_timeout_s = listener.body_timeout_s
        self.send_timeout_s = listener.send_timeout_s
        watchdog = self.watchdog
        if watchdog is None or watchdog.period_s != listener.check_period_s:
            # (a recycled HTTP/2 stream's connection keeps its own, unless a reload changed it)
            watchdog = self.watchdog = Watchdog(
                self.loop, listener.check_period_s, self._check_timeouts
            )
        if self.is_stream:
            return  # not started: the HTTP/2 connection calls check_timeouts
        ctx = self.ctx
        ctx.connections.add(self)
        ctx.opened += 1
        limit = listener.max_connections
        if ctx.closing or len(ctx.connections) > 2 * limit:
            # far over the limit: say so and go, rather than let one listener exhaust the process
            transport.write(heads.CANNED[503])
            self._close()
            return
        if len(ctx.connections) - len(ctx.waiting) > limit:
            # over the limit: this connection waits, unread, until another one closes
            transport.pause_reading()
            ctx.waiting.append(self)
        watchdog.start()

    def recycle(self) -> bool:
        """Make an HTTP/2 stream's connection, its one exchange over, ready to serve the next
        stream of the same HTTP/2 connection, as a keep-alive connection serves its next
        request: its parser waits at a message boundary. False, and nothing changed, when
        anything about it is not as a fresh connection's: it must then be let go."""
        if (
            not self.is_stream
            or self.current is not None
            or self.queue
            or self._in_message
            or self._receiving is not None
            or self._tunnel_bytes is not None
            or self._final_error is not None
            or self._discard
            or self._linger
            or self._closed
            or self._write_closed
            or self.closing
            or self._paused
            or self.write_paused
        ):
            return False
        self.transport = None
        # the watchdog's view starts over, as for a new connection
        self._begun = 0
        self._bytes_in = 0
        self._last_check = None
        self._quiet_periods = 0
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._write_closed = True
        ctx = self.ctx
        if self.is_stream:
            pass  # the HTTP/2 connection is what the listener counts
        elif self in ctx.waiting:
            ctx.connections.discard(self)
            ctx.waiting.remove(self)
        else:
            ctx.connections.discard(self)
            if ctx.waiting:
                ctx.waiting.popleft().admit()
        if self.watchdog is not None:
            self.watchdog.stop()
        for exchange in (self.current, *self.queue):
            if exchange is not None:
                exchange.cancel()
                self._log_abandoned(exchange)
        self.current = None
        self.queue.clear()
        self._receiving = None

    def _log_abandoned(self, exchange: Exchange) -> None:
        """A request whose client went away before its answer ended is still logged (and
        counted): 499 when nothing was answered yet, as nginx does, with why."""
        # at shutdown, past the drain timeout, it is evenflow that closed the connection
        who = "evenflow: shutting down, closed" if self.ctx.closing else "client: closed"
        when = "ended" if exchange.response_started else "began"
        if not exchange.response_started:
            exchange.status = CLIENT_CLOSED_REQUEST
        exchange.add_failure(f"{who} the connection before the response {when}")
        self._log(exchange)

    def admit(self) -> None:
        """A connection that waited at max_connections may now be served."""
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        # the client reads slower than the backend sends: slow the backend down
        self.write_paused = True
        if self.current is not None:
            self.current.pause_upstream()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.current is not None:
            self.current.resume_upstream()

    def data_received(self, data: bytes) -> None:
        if self._discard:
            return
        if (
            not self._bytes_in
            and data[:3] == b"PRI"
            and self.transport is not None
            and not self.is_stream
        ):
            # HTTP/2 with prior knowledge (h2c): the connection preface, not a request
            from evenflow.proxy.http2.downstream import take_over

            self.ctx.connections.discard(self)
            if self.watchdog is not None:
                self.watchdog.stop()
            take_over(self.ctx, self.transport, data)
            return
        self._bytes_in += len(data)
        if self._tunnel_bytes is not None:
            self._hold_tunnel_bytes(data)  # waiting for the backend's answer to the handshake
            return
        if not self._in_message:
            self._boundary = True
        elif self._in_head:
            self._head_bytes += len(data)
            if self._raw_first is not None:
                if self._raw_more is None:
                    self._raw_more = [data]
                else:
                    self._raw_more.append(data)
        self._data = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, ProxyError):
                raise
            self._on_bad_input(cause)
        except httptools.HttpParserUpgrade as exc:
            self._after_upgrade_request(data, int(exc.args[0]))
        except httptools.HttpParserError as exc:
            self._on_bad_input(BadRequest(f"malformed request: {exc}"))
        else:
            if self._in_head and self._head_bytes > self.max_header_bytes:
                self._on_bad_input(
                    HeadersTooLarge(f"request head over {self.max_header_bytes} bytes")
                )

    # -- llhttp callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        data = self._data
        # the head can be forwarded as sent only if it starts this read (not mid-buffer)
        self._raw_first = data if self._boundary and data[0] not in (13, 10) else None
        self._raw_more = None
        self._boundary = False
        self._head_bytes = len(data)
        self._url = b""
        self._headers = []
        self._host = None
        if self._special:
            # what the previous request's special headers set (most requests have none)
            self._special = 0
            self._content_length = 0
            self._request_id = None
            self._traceparent = None
            self._upgrade = None
        self._trailers = None
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        # a target mostly arrives in one piece: no concatenation (compiled, += is a generic add)
        self._url = self._url + url if self._url else url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Host as most clients spell it: a compare, not even a lookup
        lname = b"host" if name == b"Host" else (_LOWERCASE.get(name) or name.lower())
        if self._trailers is not None:
            self._trailers.append((lname, value))
            return
        self._headers.append((lname, value))
        # Host first: every request has one, mostly named by the constant above (an identity
        # compare, where the set lookup would hash)
        if lname == b"host":
            if self._host is not None:
                self._special |= _HOST_TWICE
            self._host = value
        elif lname in self._ordinary_names:
            pass  # only recorded
        elif lname in self._special_names:
            self._special_header(lname, value)
        elif lname[:6] == b"proxy-":
            self._special |= _REBUILD
        elif lname[:7] in _LOOKALIKE_PREFIXES:
            _refuse_lookalike(lname)

    def _special_header(self, lname: bytes, value: bytes) -> None:
        self._special |= _SEEN
        if lname in _REBUILD_TRIGGERS or lname == self.ctx.client_cert_header:
            self._special |= _REBUILD
            if lname == b"traceparent":
                self._traceparent = value
            elif lname == b"upgrade":
                self._upgrade = value
        elif lname == b"transfer-encoding":
            # checked as a whole list once the head is complete (several lines are one list)
            self._special |= _CHUNKED
        elif lname == b"content-length":
            try:
                self._content_length = int(value)
            except ValueError:
                raise BadRequest("invalid Content-Length") from None
        elif lname == b"x-request-id":
            self._request_id = value or None

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        special = self._special
        url = self._url
        host_raw = self._host
        buf = self._raw_first
        raw_head: bytes | None = None
        http10 = False
        if buf is not None:
            if self._raw_more is not None:
                buf = b"".join([buf, *self._raw_more])
                self._raw_more = None
            # the request line starts `buf`: GET, most requests' method, is read from it
            method_raw = b"GET" if buf.startswith(b"GET ") else parser.get_method()
            head_end = buf.find(b"\r\n\r\n") + 4
            # most reads hold one request and nothing after it: its head, with no copy
            raw_head = buf if head_end == len(buf) else buf[:head_end]
            self._raw_first = None
            # llhttp read the method and the target from the request line: what follows them
            # must be the version, exactly
            version_at = len(method_raw) + 1 + len(url)
            if raw_head[version_at : version_at + 11] != b" HTTP/1.1\r\n":
                http10 = self._old_version()
                special |= _REBUILD  # forwarded as HTTP/1.1, whatever the client's line said
        else:
            method_raw = parser.get_method()
            if parser.get_http_version() != "1.1":
                http10 = self._old_version()
        if special & _CHUNKED:
            check_transfer_codings(
                [v for n, v in self._headers if n == b"transfer-encoding"], http10
            )
        if special & (_REBUILD | _HOST_TWICE) or http10 or host_raw is None or url[:1] != b"/":
            url, host_raw = self._check_unusual(url, host_raw, special, http10)
            raw_head = None  # rebuilt: something in it must change
        if self._head_bytes > self.max_header_bytes:
            self._check_head_size(raw_head, url)
        if method_raw == b"GET":  # most requests: no hashing of the bytes llhttp just made
            method = "GET"
        else:
            method = _METHODS.get(method_raw) or method_raw.decode("latin-1")
        chunked = bool(special & _CHUNKED)
        exchange = Exchange(
            self,
            RequestHead(method, url, host_raw, self._headers, self.client_ip, self.ctx.scheme),
            raw_head,
            host_raw,
            self._request_id,
            self._traceparent,
            http10,
            chunked,
            # a head forwarded as sent is HTTP/1.1 with no Connection field (any would have it
            # rebuilt): llhttp's answer is known, keep-alive (RFC 9112 §9.3)
            raw_head is not None or parser.should_keep_alive(),
        )
        self._receiving = exchange
        if (
            self._upgrade is not None
            and self._upgrade.strip().lower() == b"websocket"
            and method == "GET"
            and parser.should_upgrade()
        ):
            exchange.upgrade = b"websocket"  # forwarded with Connection: upgrade (RFC 6455)
        if chunked:
            self._trailers = []
        if (
            self._special & _ANCIENT
            or (chunked or self._content_length)
            and method in _NO_BODY_METHODS
        ):
            # RFC 9110 §9.3.1: a GET or HEAD body has no defined meaning, and backends differ on
            # whether they read it (and on what an HTTP/0.9 line means): forward it once, then
            # reuse neither connection
            exchange.close_after = True
            exchange.reuse_upstream = False
        if not chunked and not self._content_length:
            exchange.request_done = True  # no body: complete now, before it is answered
        limit = self.max_body_bytes
        if self.current is None:
            self.current = exchange
            if limit is not None and self._content_length > limit:
                exchange.fail(BodyTooLarge(f"Content-Length over {limit} bytes"))
            else:
                exchange.start()
        else:
            if limit is not None and self._content_length > limit:
                raise BodyTooLarge(f"Content-Length over {limit} bytes")
            self.queue.append(exchange)
            self._pause(_PAUSE_QUEUE)

    def _old_version(self) -> bool:
        """A request line that is not exactly HTTP/1.1: True for versions handled as 1.0
        (forwarded as 1.1, connection closed after), BadRequest for versions not served."""
        version = self.parser.get_http_version()
        major, _, minor = version.partition(".")
        if major == "1" and minor.isdigit():
            # RFC 9110 §2.5: a higher minor version is handled as the highest one supported
            return minor == "0"
        if version in ("0.9", "0.0"):  # HTTP/0.9, or no version at all: served like 1.0
            self._special |= _ANCIENT
            return True
        raise VersionNotSupported(f"HTTP/{version} is not supported")

    def _check_unusual(
        self, url: bytes, host_raw: bytes | None, special: int, http10: bool
    ) -> tuple[bytes, bytes]:
        """Checks for the rarer request shapes; returns the target and Host to forward."""
        if special & _HOST_TWICE:
            raise BadRequest("more than one Host header")
        if host_raw is None and not http10:
            raise BadRequest("no Host header")  # RFC 9112 §3.2
        if url[:1] != b"/":
            url, host_raw = self._other_target_form(url, host_raw or b"")
        if self.parser.should_upgrade() and (self._content_length or special & _CHUNKED):
            raise BadRequest("a body on an Upgrade request is not supported")
        return url, host_raw or b""

    def _check_head_size(self, raw_head: bytes | None, url: bytes) -> None:
        size = (
            len(raw_head)
            if raw_head is not None
            else (len(url) + sum(len(n) + len(v) + 4 for n, v in self._headers))
        )
        if size > self.max_header_bytes:
            raise HeadersTooLarge(f"request head over {self.max_header_bytes} bytes")

    def on_body(self, body: bytes) -> None:
        exchange = self._receiving
        if exchange is not None:
            exchange.on_request_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        exchange = self._receiving
        self._receiving = None
        if exchange is not None:
            if self._trailers is not None:
                exchange.on_request_complete(self._trailers)
                self._trailers = None
            else:
                exchange.request_done = True

    # -- driven by exchanges -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self._write_closed:
            transport.write(data)

    def writelines(self, pieces: list[bytes]) -> None:
        transport = self.transport
        if transport is not None and not self._write_closed:
            transport.writelines(pieces)

    def answer_error(self, exchange: Exchange, error: ProxyError) -> None:
        """Answer `exchange` with a canned response for `error`, in its turn."""
        if not exchange.keep_alive:
            exchange.close_after = True  # the client asked to close (or spoke HTTP/1.0)
        content_type = exchange.req.header(b"content-type")
        if content_type is not None and content_type[:16].lower() == b"application/grpc":
            # a gRPC client reads grpc-status, not the HTTP status: 200 with the status in
            # headers and no body, which HTTP/2 sends as one HEADERS frame that ends the
            # stream (gRPC's "Trailers-Only" response, PROTOCOL-HTTP2.md)
            close = exchange.close_after = exchange.close_after or self.closing
            code = error.grpc_status
            response = heads.grpc_error(
                grpc.status_for_http(error.status) if code is None else code,
                error.detail,
                close=close,
            )
        elif exchange.close_after or self.closing:
            exchange.close_after = True
            response = heads.CANNED.get(error.status) or heads.canned_response(
                error.status, close=True
            )
        else:
            response = heads.CANNED_KEEP_ALIVE.get(error.status) or heads.canned_response(
                error.status
            )
        head_end = response.find(b"\r\n\r\n") + 2  # (before the blank line)
        if exchange.req.method == "HEAD":
            # the head alone (RFC 9110 §9.3.2): a body would be read as the next response
            response = response[: head_end + 2]
        exchange.bytes_out = len(response) - head_end - 2  # the body's, as for a backend's
        trace_header = self.ctx.trace_header
        if trace_header is not None and exchange.trace_id:
            # the answer a client most needs the trace id of
            response = b"%b%b: %b\r\n%b" % (
                response[:head_end],
                trace_header.encode(),
                exchange.trace_id,
                response[head_end:],
            )
        self.write(response)
        if not exchange.failures or not exchange.failures[-1].endswith(error.detail):
            exchange.add_failure(error.detail)  # an attempt's failure is noted once
        self.on_exchange_done(exchange)

    def abort_after(self, exchange: Exchange) -> None:
        """The response was cut off mid-way (why is in its failures): log it and reset the
        client connection."""
        exchange.close_after = True
        self._log(exchange)
        self.current = None
        if self.transport is not None:
            self.transport.abort()

    def on_exchange_done(self, exchange: Exchange) -> None:
        if exchange is not self.current:
            return
        self.current = None
        self._log(exchange)
        # pauses that belonged to this exchange (its backend's backpressure, its held body)
        # end with it, however it ended
        if self._paused:
            self._resume(_PAUSE_BACKPRESSURE | _PAUSE_HOLD)
        if self._tunnel_bytes is not None:
            # the backend declined the WebSocket handshake: what the client sent after it is
            # HTTP again (or nothing), parsed once this answer is out
            held, self._tunnel_bytes = self._tunnel_bytes, None
            self._resume(_PAUSE_HOLD)
            # (an HTTP/2 stream's are WebSocket frames: the stream carries no next request)
            if held and not exchange.close_after and not self.is_stream:
                self.loop.call_soon(self._replay, held)
        if self._closed:
            return
        if exchange.close_after:
            self._close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            self.current = nxt
            if not self.queue:
                self._resume(_PAUSE_QUEUE)
            nxt.start()
            return
        if self._final_error is not None:
            self.write(heads.CANNED.get(self._final_error.status, heads.CANNED[400]))
            self._close()
            return
        if self.closing:
            self._close()

    def pause_reading_for_body(self) -> None:
        self._pause(_PAUSE_HOLD)

    def resume_reading_for_body(self) -> None:
        self._resume(_PAUSE_HOLD)

    def pause_reading_for_backpressure(self) -> None:
        self._pause(_PAUSE_BACKPRESSURE)

    def resume_reading_for_backpressure(self) -> None:
        self._resume(_PAUSE_BACKPRESSURE)

    def close_when_idle(self) -> None:
        """Graceful shutdown: finish what is in progress, take no new request."""
        self.closing = True
        if self.current is None and not self._in_message:
            self._close()

    # -- internals ---------------------------------------------------------------------------

    def _other_target_form(self, url: bytes, host_raw: bytes) -> tuple[bytes, bytes]:
        lowered = url[:8].lower()
        if lowered.startswith((b"http://", b"https://")):
            # RFC 9112 §3.2.2: the authority in an absolute-form target replaces Host
            rest = url.split(b"://", 1)[1]
            slash = rest.find(b"/")
            authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
            if b"@" in authority or not authority:
                raise BadRequest("invalid authority in request target")
            return path, authority
        if url == b"*" and self.parser.get_method() == b"OPTIONS":
            return url, host_raw
        raise BadRequest("unsupported request target form")

    def _after_upgrade_request(self, data: bytes, offset: int) -> None:
        rest = data[offset:]
        last = self.queue[-1] if self.queue else self.current
        if last is not None and last.upgrade and not self._discard:
            # a WebSocket handshake: what follows belongs to the new protocol, held until the
            # backend agrees (101) or declines (then it is parsed as HTTP again)
            self._tunnel_bytes = []
            if rest:
                self._hold_tunnel_bytes(rest)
            return
        # any other Upgrade was removed (hop-by-hop): the request is a plain one, and the
        # bytes after it are the next request
        if rest and not self._discard:
            self.data_received(rest)

    def _replay(self, held: list[bytes]) -> None:
        for data in held:
            if self._closed or self._discard:
                return
            self.data_received(data)

    def _hold_tunnel_bytes(self, data: bytes) -> None:
        held = self._tunnel_bytes
        assert held is not None
        held.append(data)
        if sum(map(len, held)) > _TUNNEL_HOLD_BYTES and self.transport is not None:
            self._pause(_PAUSE_HOLD)

    def start_tunnel(
        self, exchange: Exchange, backend_transport: asyncio.Transport, backend: BackendState
    ) -> Tunnel | None:
        """Hand this connection and the backend's to a byte tunnel (after a 101)."""
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            return None
        if self.watchdog is not None:
            self.watchdog.stop()
        # the tunnel has its own backpressure and idle timeout: no send timeout from here (an
        # HTTP/2 stream's checks still run, from its connection's watchdog)
        self.write_paused = False
        held, self._tunnel_bytes = self._tunnel_bytes or [], None
        tunnel = Tunnel(
            transport,
            backend_transport,
            backend,
            self.idle_timeout_s,
            self.loop,
            lambda t, reason: self._on_tunnel_end(exchange, t, reason),
        )
        for data in held:
            tunnel.bytes_up += len(data)
            backend_transport.write(data)
        return tunnel

    def _on_tunnel_end(self, exchange: Exchange, tunnel: Tunnel, reason: str) -> None:
        exchange.on_tunnel_end(tunnel, reason)
        self._closed = True
        self._write_closed = True
        self.ctx.connections.discard(self)
        if self.current is exchange:
            self.current = None
        self._log(exchange)

    def _on_bad_input(self, error: ProxyError) -> None:
        if self._discard:
            return  # already answered and closing: the rest of the input is ignored
        self._discard = True
        self._linger = True  # the client may still be sending: half-close, read, then close
        self._in_message = False
        exchange = self._receiving
        self._receiving = None
        if exchange is not None and exchange is self.current:
            if exchange.response_started:
                exchange.cancel()
                exchange.close_after = True
                exchange.add_failure(f"client: {error.detail}")  # the log says why it was cut
                self.abort_after(exchange)
                return
            if not exchange.response_done:
                exchange.cancel()
                exchange.close_after = True
                exchange.fail(error)
                return
        if self.current is None and not self.queue:
            self._log_error(error)
            self.write(
                heads.CANNED.get(error.status) or heads.canned_response(error.status, close=True)
            )
            self._close()
        else:
            self._final_error = error  # answered once the requests before it are
            self._log_error(error)

    def _pause(self, reason: int) -> None:
        if self._paused == 0 and self.transport is not None and not self._closed:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if self._paused == 0 and self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def check_timeouts(self) -> bool:
        """The watchdog's check, run by the HTTP/2 connection for a stream's connection."""
        return self._check_timeouts()

    def _check_timeouts(self) -> bool:
        """The watchdog's check (see proxy/watchdog.py). Returns False once closed."""
        if self._closed:
            return False
        transport = self.transport
        if (
            not self.is_stream
            and transport is not None
            and (self.write_paused or (self._discard and transport.get_write_buffer_size()))
        ):
            # the client is not reading: its response, in progress or finished and waiting to
            # be flushed before a close, is cut once nothing drained for the send timeout (a
            # stream's is its HTTP/2 connection's business: ClientStream.check_send_timeout)
            seen: tuple[str, int] = ("sending", transport.get_write_buffer_size())
            limit = self.send_timeout_s
        elif self._discard:
            return False
        elif self._in_head or (self._begun == 0 and not self._in_message):
            # a head is counted from its first byte (or the connection's start); bytes that
            # trickle in do not reset it: that is the slowloris attack
            seen = ("head", self._begun)
            limit = self.header_timeout_s
        elif self._in_message:
            seen = ("body", self._bytes_in)
            limit = self.body_timeout_s
            if self._paused:
                seen = ("paused", self._bytes_in)  # evenflow is the one not reading
        elif self.current is None:
            seen = ("idle", self._begun)
            limit = self.idle_timeout_s
        else:
            seen = ("answering", self._begun)  # the backend side owns this wait
            limit = 0.0
        if seen != self._last_check or not limit:
            self._last_check = seen
            self._quiet_periods = 0
            return True
        self._quiet_periods += 1
        if self._quiet_periods < periods(limit, self.watchdog.period_s if self.watchdog else 1):
            return True
        if seen[0] == "sending":
            self._cut_unread()
        elif seen[0] == "idle" or (seen[0] == "head" and self._bytes_in == 0):
            self._close()  # an idle keep-alive connection, or one that never sent a byte
        elif seen[0] == "head":
            self._on_bad_input(RequestTimeout("request head not received in time"))
        else:
            self._on_bad_input(RequestTimeout("request body stalled"))
        return False

    def _cut_unread(self) -> None:
        """The send timeout: the client left its response unread too long. The response is
        cut off (its backend connection cannot be reused) and the connection reset."""
        exchange = self.current
        if exchange is not None:
            exchange.add_failure(f"client did not read the response for {self.send_timeout_s:g}s")
            exchange.cancel()  # frees the backend (and its connection) now
            exchange.close_after = True
            self.current = None
            self._log(exchange)
        transport = self.transport
        if transport is None:
            return
        # a reset, not a FIN after what is queued: a response delimited by the close (HTTP/1.0)
        # must not look complete to the client
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

    def _close(self) -> None:
        """Close after what was written is flushed; drain unread input briefly (no RST)."""
        self._discard = True
        transport = self.transport
        if self.watchdog is not None and (
            transport is None or self.is_stream or not transport.get_write_buffer_size()
        ):
            self.watchdog.stop()  # (with output unsent it runs on: the send timeout)
        if transport is None or transport.is_closing() or self._write_closed:
            return
        self._write_closed = True
        if (self._in_message or self._linger) and transport.can_write_eof():
            # the client is still sending: closing now could reset the connection and lose
            # the answer in flight, so half-close and read what is left for a moment
            transport.write_eof()
            self._resume(self._paused)
            self.loop.call_later(_LINGER_S, transport.close)
        else:
            transport.close()

    def _log(self, exchange: Exchange) -> None:
        """Count the finished exchange in the metrics, and log its line."""
        ended_at = _perf_counter()
        duration = ended_at - exchange.started_at
        if self.ctx.count_requests:
            self._count(exchange, duration)
        access_log = self.ctx.access_log
        if access_log is not None:
            route, pool, backend = exchange.route, exchange.pool, exchange.backend
            access_log.log_request(
                self.listener_name,
                exchange.req,
                exchange.status,
                exchange.bytes_in,
                exchange.bytes_out,
                duration,
                ended_at,
                exchange.attempts,
                None if route is None else route.name,
                None if pool is None else pool.name,
                None if pool is None else pool.algorithm,
                route is not None and route.is_split,
                None if backend is None else backend.address,
                exchange.hash_key,
                exchange.sticky,
                exchange.failures,
                exchange.connect_s,
                exchange.ttfb,
                exchange.request_id,
                exchange.request_id_given,
                exchange.trace_id,
                exchange.http10,
            )

    def _count(self, exchange: Exchange, duration: float) -> None:
        route = exchange.route
        cache = route.series if route is not None else self.ctx.unrouted
        backend = exchange.backend
        key: object = backend if backend is not None else exchange.pool
        series = cache.get(key)
        if series is None:
            pool = exchange.pool
            series = cache[key] = self.ctx.stats.request_series(
                self.listener_name,
                route.name if route is not None else "",
                pool.name if pool is not None else "",
                backend.address if backend is not None else "",
            )
        series.count_status(exchange.status)
        series.bytes_in += exchange.bytes_in
        series.bytes_out += exchange.bytes_out
        series.duration.observe(duration)
        if exchange.ttfb:
            series.ttfb.observe(exchange.ttfb)

    def _log_error(self, error: ProxyError) -> None:
        access_log = self.ctx.access_log
        if access_log is not None:
            # the same fields as any request line, so log readers need no special case
            access_log.log_record(
                {
                    "listener": self.listener_name,
                    "client": self.client_ip,
                    "method": None,
                    "path": None,
                    "host": None,
                    "status": error.status,
                    "bytes_in": 0,
                    "bytes_out": 0,
                    "duration_ms": 0.0,
                    "route": None,
                    "pool": None,
                    "backend": None,
                    "attempts": 0,
                    "failures": [error.detail],
                }
            )
