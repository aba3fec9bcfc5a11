"""A client's HTTP/2 connection: h2 (sans-IO) on an asyncio Protocol, one ClientStream per request.

The connection owns what is shared by its streams: the socket, h2's state, the flood guard, one
watchdog (idle connection, stuck header block, and each stream's own request timeouts), the
listener's registration (shutdown, max_connections) and the output, written once per batch.
Each request is served by an HTTP/1.1 DownstreamConnection over its ClientStream (see
client_stream.py), so routing, balancing and retries know nothing of HTTP/2.

h2 treats every GOAWAY, sent or received, as the end of the connection; a graceful GOAWAY is
therefore written as a raw frame, and a client's graceful GOAWAY lets in-flight streams finish.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final, cast

from h2.errors import ErrorCodes
from h2.exceptions import DenialOfServiceError, ProtocolError
from h2.settings import SettingCodes

from evenflow.config.http2 import MAX_WINDOW_BYTES
from evenflow.proxy.http1.downstream import ClientOrigin, client_origin
from evenflow.proxy.http2.client_stream import ClientStream, StreamDownstream
from evenflow.proxy.http2.downstream_fields import Malformed, parse_request
from evenflow.proxy.http2.engine import H2Engine
from evenflow.proxy.http2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from evenflow.proxy.http2.guard import FrameGuard, GuardLimits, Http2Stats
from evenflow.proxy.watchdog import Watchdog, periods

if TYPE_CHECKING:
    from evenflow.config.model import HttpListener
    from evenflow.proxy.http1.downstream import HttpListenerContext

log = logging.getLogger(__name__)

_ABORT_AFTER_S: Final = 2.0  # a connection closed for abuse that does not drain its output is reset
_ABSENT: Final = object()  # extra info a transport does not have
_DEFAULT_WINDOW_BYTES: Final = 65535  # RFC 9113 §6.9.2: every connection window starts here


def take_over(ctx: HttpListenerContext, transport: asyncio.Transport, initial: bytes = b"") -> None:
    """Make `transport` an HTTP/2 connection (ALPN chose h2, or `initial` is the h2c preface).

    Called by the HTTP/1.1 DownstreamConnection that accepted the connection: it has counted
    it in `ctx.opened`; after h2c it had registered and admitted it (and removed itself).
    """
    listener = ctx.source.snapshot.listeners[ctx.name].config
    conn = H2Connection(ctx, listener)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    if conn.closed:
        return
    if not initial:
        conn.admit_or_wait(listener.limits.max_connections)
    elif not listener.http2.h2c:
        conn.refuse(ErrorCodes.HTTP_1_1_REQUIRED, "h2c is off on this listener")
    else:
        conn.data_received(initial)


class H2Connection(asyncio.Protocol):
    __slots__ = (
        # connection lifetime
        "ctx",
        "loop",
        "transport",
        "_extra",
        "h2",
        "guard",
        "stats",
        "streams",
        "client_ip",
        "origin",
        "spare_downstreams",
        "watchdog",
        "header_timeout_s",
        "idle_timeout_s",
        "send_periods",
        "closed",
        "write_paused",
        "_settings",
        "_max_header_bytes",
        "_closing",
        "_last_stream_id",
        "_peer_gone",
        "_waiting",
        # output
        "_dirty",
        "_flush_handle",
        "_receiving",
        "_refused",
        # watchdog
        "_bytes_in",
        "_last_check",
        "_quiet_periods",
    )

    def __init__(self, ctx: HttpListenerContext, listener: HttpListener) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        self._extra: dict[str, Any] = {}  # the transport's extra info, as asked by streams
        settings = self._settings = listener.http2
        self._max_header_bytes = listener.limits.max_header_bytes
        self.h2 = H2Engine(
            {
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: self._max_header_bytes,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_bytes,
                # RFC 8441: WebSockets over this connection's streams
                SettingCodes.ENABLE_CONNECT_PROTOCOL: int(settings.websocket),
            }
        )
        self.guard = FrameGuard(
            GuardLimits(
                settings.max_resets_per_s,
                settings.max_control_frames_per_s,
                settings.max_continuation_frames,
                # an encoded block is smaller than the list it decodes to, unless Huffman
                # coding works against it: twice the list limit leaves room for that
                2 * self._max_header_bytes,
            )
        )
        stats = ctx.http2
        if stats is None:
            stats = ctx.http2 = Http2Stats()
        self.stats = stats
        self.streams: dict[int, ClientStream] = {}
        self.client_ip = "unknown"
        self.origin: ClientOrigin | None = None  # the client, as each stream forwards it
        # finished streams' DownstreamConnections, ready for new streams (see ClientStream)
        self.spare_downstreams: list[StreamDownstream] = []
        timeouts = listener.timeouts
        self.header_timeout_s = timeouts.header
        self.idle_timeout_s = timeouts.idle
        # the same period as the streams' DownstreamConnections, whose checks it runs
        self.watchdog = Watchdog(
            self.loop,
            min(timeouts.header, timeouts.idle, timeouts.body, timeouts.send),
            self._check_timeouts,
        )
        # watchdog periods a stream may wait, its output unsent, for a client giving no window
        self.send_periods = periods(timeouts.send, self.watchdog.period_s)
        self.closed = False
        self.write_paused = False  # the socket's buffer is full
        self._closing = False  # graceful: GOAWAY sent, close once the streams are done
        self._last_stream_id = 0  # the last stream served after a graceful GOAWAY
        self._peer_gone = False  # the client sent GOAWAY: close once the streams are done
        self._waiting = False  # paused at max_connections until another connection closes
        self._dirty: list[ClientStream] = []
        self._flush_handle: asyncio.Handle | None = None
        self._receiving = False  # inside data_received, which flushes when it is done
        self._bytes_in = 0
        self._refused = 0  # streams the engine refused, as counted in the listener's stats
        self._last_check = -1
        self._quiet_periods = 0

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = transport = cast(asyncio.Transport, transport)
        origin = self.origin = client_origin(
            self.ctx, transport, transport.get_extra_info("ssl_object")
        )
        self.client_ip = origin.client_ip
        self.ctx.connections.add(self)
        self.stats.connections += 1
        settings = self._settings
        h2 = self.h2
        h2.initiate_connection()
        # every stream may fill its window at once, so a stalled one never blocks the others;
        # this is also the most request body one connection can make evenflow hold
        window = min(
            settings.initial_window_bytes * settings.max_concurrent_streams, MAX_WINDOW_BYTES
        )
        if window > _DEFAULT_WINDOW_BYTES:
            h2.increment_flow_control_window(window - _DEFAULT_WINDOW_BYTES)
        if self.ctx.closing:
            self.refuse(ErrorCodes.NO_ERROR, "shutting down")
            return
        self._flush()
        self.watchdog.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ctx = self.ctx
        ctx.connections.discard(self)
        if self._waiting:
            ctx.waiting.remove(self)
        elif ctx.waiting:
            ctx.waiting.popleft().admit()
        self.watchdog.stop()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for stream in list(self.streams.values()):
            stream.on_reset()

    def pause_writing(self) -> None:
        # the client reads slower than the backends send: slow every stream's backend down
        self.write_paused = True
        for stream in list(self.streams.values()):
            stream.set_socket_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.set_socket_paused(False)

    def eof_received(self) -> bool:
        return False  # HTTP/2 has no half-close: the connection is over

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._bytes_in += len(data)
        reason = self.guard.feed(data, self.loop.time())
        if reason is not None:
            self._close_for_abuse(reason)
            return
        try:
            events = self.h2.receive_data(data)
        except DenialOfServiceError:
            self._close_for_abuse("header_list_too_large")  # HPACK bomb (CVE-2016-6581)
            return
        except ProtocolError as exc:
            # h2 has queued the GOAWAY that says why
            self.stats.protocol_errors += 1
            log.debug("HTTP/2 protocol error from %s: %s", self.client_ip, exc)
            self._shut()
            return
        refused = self.h2.refused_streams - self._refused
        if refused:
            self._refused += refused
            self.stats.refused += refused
        self._receiving = True  # what the streams write now leaves with the flush below
        try:
            self._dispatch(events)
        finally:
            self._receiving = False
        self._flush()

    def _dispatch(self, events: list[Event]) -> None:
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is RequestReceived:
                assert isinstance(event, RequestReceived)
                self._on_request(event)
            elif kind is DataReceived:
                assert isinstance(event, DataReceived)
                sid: int = event.stream_id
                stream = streams.get(sid)
                if stream is not None:
                    stream.on_data(event.data, event.flow_controlled_length)
                elif event.flow_controlled_length:
                    # a stream already answered or reset: give the connection window back
                    self.acknowledge(event.flow_controlled_length, sid)
            elif kind is StreamEnded:
                assert isinstance(event, StreamEnded)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_end()
            elif kind is TrailersReceived:
                assert isinstance(event, TrailersReceived)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_trailers(event.headers)
            elif kind is StreamReset:
                assert isinstance(event, StreamReset)
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_reset()
            elif kind is WindowUpdated:
                assert isinstance(event, WindowUpdated)
                self._on_window(event.stream_id)
            elif kind is RemoteSettingsChanged:
                assert isinstance(event, RemoteSettingsChanged)
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self._on_window(0)
            elif kind is ConnectionTerminated:
                assert isinstance(event, ConnectionTerminated)
                self._on_goaway(event.error_code)
                if self.closed:
                    return

    # -- driven by the streams ---------------------------------------------------------------

    def extra_info(self, name: str, default: Any = None) -> Any:
        """The transport's extra info for `name`, asked of it once: every stream asks for its
        peer's address, and uvloop answers with a system call."""
        extra = self._extra
        if name in extra:
            found = extra[name]
        else:
            transport = self.transport
            if transport is None:
                return default
            found = extra[name] = transport.get_extra_info(name, _ABSENT)
        return default if found is _ABSENT else found

    def want_flush(self, stream: ClientStream | None) -> None:
        """`stream` (or only h2's own output, for None) has something to send soon."""
        if stream is not None and not stream.dirty:
            stream.dirty = True
            self._dirty.append(stream)
        if self._flush_handle is None and not self._receiving and not self.closed:
            # one write for everything the streams produce in this turn of the loop
            self._flush_handle = self.loop.call_soon(self._flush)

    def acknowledge(self, size: int, stream_id: int) -> None:
        """Give `size` bytes of flow-control window back to the client (the data was read)."""
        if not self.closed:
            self.h2.acknowledge_received_data(size, stream_id)

    def on_malformed(self, stream_id: int, detail: str) -> None:
        self.stats.malformed += 1
        log.debug("malformed HTTP/2 request from %s: %s", self.client_ip, detail)

    def on_stream_finished(self, stream: ClientStream) -> None:
        self.streams.pop(stream.stream_id, None)
        if not self.streams and (self._closing or self._peer_gone) and not self.closed:
            self.want_flush(None)  # _flush closes once the last frames are out

    # -- the listener ------------------------------------------------------------------------

    def admit_or_wait(self, limit: int) -> None:
        """max_connections for a connection that TLS handed over (h2c ones were admitted)."""
        ctx = self.ctx
        if len(ctx.connections) > 2 * limit:
            self.refuse(ErrorCodes.NO_ERROR, "far over max_connections")  # as HTTP/1.1's 503
        elif len(ctx.connections) - len(ctx.waiting) > limit and self.transport is not None:
            self.transport.pause_reading()  # waits, unread, until another connection closes
            self._waiting = True
            ctx.waiting.append(self)

    def admit(self) -> None:
        """A connection that waited at max_connections may now be served."""
        self._waiting = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close_when_idle(self) -> None:
        """Graceful shutdown: GOAWAY now (streams in progress finish), close when none is left."""
        if self.closed or self._closing:
            return
        self._closing = True
        self._last_stream_id = self.h2.highest_inbound_stream_id
        if self.transport is not None:
            # RFC 9113 §6.8: streams up to last_stream_id are served, later ones refused
            self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self._last_stream_id)
            self.transport.write(self.h2.data_to_send())
        if not self.streams:
            self._shut()

    def refuse(self, code: int, why: str) -> None:
        """Close at once with a GOAWAY carrying `code` (before any stream was served)."""
        log.debug("HTTP/2 connection from %s refused: %s", self.client_ip, why)
        self.h2.close_connection(code, last_stream_id=0)
        self._shut()

    # -- internals ---------------------------------------------------------------------------

    def _on_request(self, event: RequestReceived) -> None:
        sid: int = event.stream_id
        if self._closing and sid > self._last_stream_id:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)  # after our GOAWAY
            return
        self.stats.streams += 1
        try:
            request = parse_request(event.headers, self._settings.websocket)
        except Malformed as exc:
            self.on_malformed(sid, str(exc))
            self.h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
            return
        stream = self.streams[sid] = ClientStream(self, sid)
        stream.start(request, event.stream_ended is not None)

    def _on_window(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None and stream.get_write_buffer_size():
                self.want_flush(stream)
            return
        for stream in self.streams.values():
            if stream.get_write_buffer_size():
                self.want_flush(stream)

    def _on_goaway(self, error_code: int) -> None:
        if error_code == ErrorCodes.NO_ERROR and self.streams:
            # a graceful GOAWAY from the client still lets the streams it opened finish
            # (RFC 9113 §6.8)
            self._peer_gone = True
            return
        self._shut()

    def _flush(self) -> None:
        self._flush_handle = None
        if self.closed:
            return
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for stream in dirty:
                stream.push()
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None:
            transport.write(data)
        if (self._closing or self._peer_gone) and not self.streams:
            self._shut()

    def _close_for_abuse(self, reason: str) -> None:
        abuse = self.stats.abuse
        abuse[reason] = abuse.get(reason, 0) + 1
        log.warning(
            "listener %s: closing HTTP/2 connection from %s: %s (%d streams open)",
            self.ctx.name,
            self.client_ip,
            reason.replace("_", " "),
            len(self.streams),
        )
        self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self._shut()
        if self.transport is not None:
            # a flooding client may also not read: do not wait for it to drain the GOAWAY
            self.loop.call_later(_ABORT_AFTER_S, self.transport.abort)

    def _shut(self) -> None:
        """Send what h2 has queued (a GOAWAY), end every stream, close the socket."""
        if self.closed:
            return
        self.closed = True
        self.watchdog.stop()
        transport = self.transport
        data = self.h2.data_to_send()
        if transport is not None:
            if data:
                transport.write(data)
            transport.close()
        for stream in list(self.streams.values()):
            stream.on_reset()

    def _check_timeouts(self) -> bool:
        """The watchdog's check. Returns False once the connection is closed."""
        if self.closed:
            return False
        since = self.guard.block_since
        if since is not None and self.loop.time() - since >= self.header_timeout_s:
            self._close_for_abuse("header_timeout")  # a header block left open: slowloris
            return False
        for stream in list(self.streams.values()):
            down = stream.down
            if down is not None:
                down.check_timeouts()  # the stream's request head and body timeouts
            stream.check_send_timeout(self.send_periods)
        if self.streams or self._bytes_in != self._last_check:
            self._last_check = self._bytes_in
            self._quiet_periods = 0
            return True
        self._quiet_periods += 1
        if self._quiet_periods >= periods(self.idle_timeout_s, self.watchdog.period_s):
            self.close_when_idle()  # idle too long: GOAWAY and close
            return False
        return True
