"""One HTTP/2 stream from a client, as the transport of an ordinary HTTP/1.1 DownstreamConnection.

HTTP/1.1 is evenflow's lingua franca: the stream's request is fed to a DownstreamConnection as
an HTTP/1.1 head and body (chunked when no content-length frames it), so routing, balancing,
retries and logging are exactly those of HTTP/1.1. What the DownstreamConnection writes back is
parsed by llhttp and leaves as HEADERS, DATA within the client's flow-control window, and
trailers. Flow control is the backpressure both ways: DATA is acknowledged only while the
DownstreamConnection reads, and past _HIGH_WATER_BYTES of unsent body it is told to pause.
This module knows h2's API but not the connection's socket: H2Connection owns that.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import httptools
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from evenflow.proxy.http1.downstream import DownstreamConnection
from evenflow.proxy.http2.downstream_fields import (
    H2Request,
    Malformed,
    encoded_response_head,
    response_fields,
    response_trailers,
    trailer_lines,
)
from evenflow.proxy.http2.field_encoder import encode_field

if TYPE_CHECKING:
    from evenflow.proxy.http1.exchange import Exchange
    from evenflow.proxy.http2.downstream import H2Connection

log = logging.getLogger(__name__)

# Response body bytes held for one stream beyond the client's flow-control window: past the
# high mark the backend is paused (its reading stops), below the low mark it resumes. One
# backend read may land on top of the high mark, so a stream holds at most that much more.
_HIGH_WATER_BYTES: Final = 64 * 1024
_LOW_WATER_BYTES: Final = 16 * 1024

# why the DownstreamConnection was told to pause writing (a bit each)
_HELD: Final = 1  # this stream holds too many bytes the client's window does not admit yet
_SOCKET: Final = 2  # the client connection's socket buffer is full

_LAST_CHUNK: Final = b"0\r\n\r\n"
# DownstreamConnections of finished streams an HTTP/2 connection keeps for its next ones
_SPARE_DOWNSTREAMS: Final = 16

# A response head as the DownstreamConnection wrote it (its exact bytes) -> what llhttp and
# encoded_response_head made of it: (status, HPACK pieces, index of the content-length piece,
# the body's length). Only heads of a final response whose body a content-length frames are
# kept; the next such head is taken from here without llhttp (a parser costs more to make
# than to run). A backend's head repeats but for its Date: few entries, emptied when full.
_known_heads: Final[dict[bytes, tuple[int, list[bytes], int, int]]] = {}
_KNOWN_HEADS_LIMIT: Final = 256
_NO_BODY_METHODS: Final = frozenset((b"GET", b"HEAD"))


class StreamDownstream(Protocol):
    """What a stream asks of the HTTP/1.1 connection it feeds its request to."""

    @property
    def current(self) -> Exchange | None: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def check_timeouts(self) -> bool: ...
    def recycle(self) -> bool: ...


# Makes each stream's DownstreamConnection. A plain module name, read when a stream starts, so
# that the unit tests can stand a recording fake in (compiled code binds a class at build time).
new_downstream: Callable[..., StreamDownstream] = DownstreamConnection


class _HeadResponseEnd(Exception):
    """Raised from on_headers_complete: a HEAD response has no body (llhttp cannot know)."""


class ClientStream(asyncio.Transport):
    """The virtual transport of one stream (see the module docstring); also llhttp's callbacks
    for the HTTP/1.1 response written into it."""

    __slots__ = (
        "conn",
        "stream_id",
        "down",
        # request side
        "_deferred",
        "_chunked",
        "_request_ended",
        "_reading_paused",
        "_unacked",
        # an RFC 8441 WebSocket: the handshake asked for, answered (101), relayed
        "_websocket",
        "_upgraded",
        "_declined",
        "_tunnel",
        # response side
        "_parser",
        "_past_http",
        "_head_seen",
        "_body_left",
        "_is_head",
        "_fields",
        "_has_framing",
        "_interim",
        "_in_interim",
        "_status",
        "_head",
        "_length_at",
        "_out",
        "_out_bytes",
        "_trailers",
        "_complete",
        "_end_sent",
        "_high",
        "_low",
        "_write_paused",
        "_sent",
        "_sent_checked",
        "_stalled_periods",
        # ending
        "_closing",
        "_reset_code",
        "_finished",
        "dirty",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        # asyncio.BaseTransport.__init__ is not called: all it does is keep the extra info
        # dict that get_extra_info, overridden here, would read (it is interpreted code, run
        # for every stream)
        self.conn = conn
        self.stream_id = stream_id
        self.down: StreamDownstream | None = None
        # a GET or HEAD whose HEADERS did not end the stream: its head waits for the first
        # DATA or the end, so that an empty body does not become a chunked GET upstream
        self._deferred: H2Request | None = None
        self._chunked = False  # the request body goes to the DownstreamConnection as chunks
        self._request_ended = False
        self._reading_paused = False
        self._unacked = 0  # DATA bytes received while paused, acknowledged on resume
        self._websocket = False  # the request is an extended CONNECT for a WebSocket
        self._upgraded = False  # the backend switched protocols: bytes from here on
        self._declined = False  # the backend answered 2xx, not 101: the client gets a 502
        # the byte relay's protocol that took this stream over after the 101 (proxy/tunnel.py)
        self._tunnel: asyncio.Protocol | None = None
        # made for the first head that is not known already (see _known_heads)
        self._parser: httptools.HttpResponseParser | None = None
        # what is written is no longer HTTP/1.1: a HEAD response's head was, or a 101
        self._past_http = False
        self._head_seen: bytes | None = None  # the head llhttp is given, to be known next time
        self._body_left = -1  # a known head's body still to come; -1: llhttp frames it
        self._is_head = False
        self._fields: list[tuple[bytes, bytes]] = []  # the head's, then the trailers' fields
        self._has_framing = False  # the response head had a content-length or chunked
        self._interim: list[list[tuple[bytes, bytes]]] = []  # 1xx heads not sent yet
        self._in_interim = False
        self._status = 0
        self._head: list[bytes] | None = None  # final HEADERS not sent yet, HPACK-encoded
        # ..and where their content-length is (-1: none), dropped when they end the stream
        self._length_at = -1
        self._out: deque[bytes | memoryview] = deque()  # body not sent yet
        self._out_bytes = 0
        self._trailers: list[tuple[bytes, bytes]] = []
        self._complete = False  # the whole response was written to this transport
        self._end_sent = False  # END_STREAM went out
        self._high = _HIGH_WATER_BYTES
        self._low = _LOW_WATER_BYTES
        self._write_paused = 0  # _HELD | _SOCKET
        self._sent = 0  # body bytes sent as DATA (the send timeout's progress)
        self._sent_checked = 0  # ..as the previous watchdog period saw it
        self._stalled_periods = 0  # periods with output waiting and none of it sent
        self._closing = False
        self._reset_code: int | None = None  # set: reset the stream with this at the next push
        self._finished = False
        self.dirty = False  # queued for the connection's next flush

    # -- driven by the HTTP/2 connection ----------------------------------------------------

    def start(self, request: H2Request, ended: bool) -> None:
        """Hand the request to a new DownstreamConnection (its head now, unless deferred)."""
        conn = self.conn
        spare = conn.spare_downstreams
        down = self.down = spare.pop() if spare else new_downstream(conn.ctx, stream=conn.origin)
        down.connection_made(self)
        self._is_head = request.method == b"HEAD"
        self._request_ended = ended
        if request.websocket:
            # the handshake now; DATA that follows is the WebSocket's, held by the
            # DownstreamConnection until the backend's 101, then relayed by the tunnel
            self._websocket = True
            down.data_received(request.head(chunked=False))
        elif ended or request.has_length:
            down.data_received(request.head(chunked=False))
        elif request.method in _NO_BODY_METHODS:
            self._deferred = request
        else:
            self._chunked = True
            down.data_received(request.head(chunked=True))
        if self.conn.write_paused:
            self.set_socket_paused(True)

    def on_data(self, data: bytes, flow_controlled: int) -> None:
        down = self.down
        tunnel = self._tunnel
        if tunnel is not None:
            if data:
                tunnel.data_received(data)
        elif self._websocket and self._status:
            pass  # the backend declined the WebSocket: its bytes have nowhere to go
        elif down is not None and data:
            deferred = self._deferred
            if deferred is not None:
                self._deferred = None
                self._chunked = True
                down.data_received(deferred.head(chunked=True))
            down.data_received(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
        if not flow_controlled:
            return
        if self._reading_paused and not self._finished:
            self._unacked += flow_controlled  # backpressure: the client's window stays spent
        else:
            self.conn.acknowledge(flow_controlled, self.stream_id)

    def on_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Request trailers (always with END_STREAM): the last chunk carries them."""
        if self._websocket:
            # RFC 9113 §8.5: after the CONNECT's HEADERS, only DATA and stream management
            self.conn.on_malformed(self.stream_id, "HEADERS on a WebSocket stream")
            self.reset(ErrorCodes.PROTOCOL_ERROR)
            return
        try:
            trailers = trailer_lines(headers)
        except Malformed as exc:
            self.conn.on_malformed(self.stream_id, str(exc))
            self.reset(ErrorCodes.PROTOCOL_ERROR)
            return
        down = self.down
        if down is None:
            return
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            self._chunked = True
            down.data_received(deferred.head(chunked=True))
        self._request_ended = True
        if self._chunked:
            # a content-length body cannot carry trailers in HTTP/1.1: they are dropped then
            fields = b"".join([b"%s: %s\r\n" % pair for pair in trailers])
            down.data_received(b"0\r\n%s\r\n" % fields)

    def on_end(self) -> None:
        """The client ended its side of the stream (END_STREAM)."""
        if self._request_ended:
            return  # ended with the HEADERS, or with trailers
        self._request_ended = True
        if self._tunnel is not None:
            self._tunnel.eof_received()  # a WebSocket's half-close goes on to the backend
            return
        down = self.down
        if down is None:
            return
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            down.data_received(deferred.head(chunked=False))
        elif self._chunked:
            down.data_received(_LAST_CHUNK)

    def on_reset(self) -> None:
        """The client reset the stream, or the connection is gone: stop everything."""
        self._reset_code = None
        self.finish()

    def check_send_timeout(self, limit_periods: int) -> None:
        """The connection's watchdog, once a period: a stream whose output has waited for the
        client's window (or socket) for the listener's send timeout is reset, even once its
        exchange is over, so a client cannot hold streams and their buffers by not reading."""
        if not self._out_bytes or self._sent != self._sent_checked:
            self._sent_checked = self._sent
            self._stalled_periods = 0
            return
        self._stalled_periods += 1
        if self._stalled_periods >= limit_periods:
            log.debug("stream %d of %s: response left unread", self.stream_id, self.conn.client_ip)
            self.reset(ErrorCodes.CANCEL)

    def set_socket_paused(self, paused: bool) -> None:
        self._set_write_paused(_SOCKET, paused)

    def push(self) -> None:
        """Move what was written into h2 frames, as far as the client's window allows."""
        self.dirty = False
        if self._finished:
            return
        h2 = self.conn.h2
        sid = self.stream_id
        try:
            if self._reset_code is not None:
                if not self._end_sent or not self._request_ended:
                    # also after our END_STREAM while the client's side is open (a WebSocket
                    # the backend half-closed): h2 keeps counting the stream until it ends
                    h2.reset_stream(sid, self._reset_code)
                self.finish()
                return
            for fields in self._interim:
                h2.send_headers(sid, fields)
            self._interim.clear()
            out = self._out
            head = self._head
            if head is not None:
                self._head = None
                end = self._complete and not out and not self._trailers
                # when the stream ends here a content-length would say nothing more (a HEAD's
                # or a 304's tells the size of what was not sent)
                if self._length_at >= 0 and end and not self._is_head and self._status != 304:
                    del head[self._length_at]
                h2.send_encoded_headers(sid, head, end_stream=end)
                self._end_sent = end
            if out:
                self._send_body(out)
            if self._complete and not out and not self._end_sent and self._status:
                if self._trailers:
                    h2.send_headers(sid, self._trailers, end_stream=True)
                else:
                    h2.send_data(sid, b"", end_stream=True)
                self._end_sent = True
        except ProtocolError as exc:
            # the stream closed under us (a reset crossing our frames): nothing more to send;
            # reset it, should the engine still count it open
            log.debug("stream %d of %s: %s", sid, self.conn.client_ip, exc)
            h2.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            self.finish()
            return
        if self._write_paused & _HELD and self._out_bytes <= self._low:
            self._set_write_paused(_HELD, False)
        if self._end_sent:
            if not self._request_ended:
                if self._tunnel is not None and not self._closing:
                    return  # a WebSocket half-closed by the backend: the client may still send
                # RFC 9113 §8.1: a complete response; the rest of the request is not wanted
                h2.reset_stream(sid, ErrorCodes.NO_ERROR)
            self.finish()

    def _send_body(self, out: deque[bytes | memoryview]) -> None:
        h2 = self.conn.h2
        sid = self.stream_id
        window = h2.local_flow_control_window(sid)
        frame_bytes = h2.max_outbound_frame_size
        while out and window > 0:
            data = out[0]
            size = min(window, frame_bytes)
            if len(data) > size:
                view = data if isinstance(data, memoryview) else memoryview(data)
                piece: bytes | memoryview = view[:size]
                out[0] = view[size:]
            else:
                piece = out.popleft()
                size = len(piece)
            last = not out and self._complete and not self._trailers
            h2.send_data(sid, piece, end_stream=last)
            self._end_sent = last
            window -= size
            self._out_bytes -= size
            self._sent += size

    def finish(self) -> None:
        """The stream is over: release its DownstreamConnection (and through it the backend)."""
        if self._finished:
            return
        self._finished = True
        self._parser = None
        self._past_http = True
        self._out.clear()
        self._out_bytes = 0
        unacked, self._unacked = self._unacked, 0
        if unacked and not self.conn.closed:
            # DATA read while paused was never acknowledged: the connection's window gets it
            # back, or every stream ended this way would shrink it for good
            self.conn.acknowledge(unacked, self.stream_id)
            self.conn.want_flush(None)
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            tunnel.connection_lost(None)  # ends the relay, and the exchange with it
        down, self.down = self.down, None
        if down is not None:
            spare = self.conn.spare_downstreams
            if (
                self._end_sent
                and self._request_ended
                and self._reset_code is None
                and not self._websocket
                and len(spare) < _SPARE_DOWNSTREAMS
                and not self.conn.closed
                and down.recycle()
            ):
                spare.append(down)  # the next stream's: making one costs more than a request
            else:
                down.connection_lost(None)
        self.conn.on_stream_finished(self)

    def reset(self, code: int) -> None:
        """Reset the stream with `code` at the next flush (and drop what it holds)."""
        if not self._finished and self._reset_code is None:
            self._reset_code = code
            self.conn.want_flush(self)

    # -- asyncio.Transport, as the DownstreamConnection uses it ------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._complete or self._reset_code is not None:
            return
        if self._body_left >= 0:
            self._known_body(data)
            self.conn.want_flush(self)
            return
        if self._past_http:
            if self._upgraded and data:
                self.on_body(bytes(data))  # the WebSocket's bytes, as DATA
                self.conn.want_flush(self)
            return
        parser = self._parser
        if parser is None:
            if self._known_head(data):
                self.conn.want_flush(self)
                return
            parser = self._parser = httptools.HttpResponseParser(self)
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _HeadResponseEnd):
                raise
            self._past_http = True  # whatever follows a HEAD response's head is not its body
        except httptools.HttpParserUpgrade as exc:
            if not self._upgraded:
                log.error("stream %d of %s: unasked 101", self.stream_id, self.conn.ctx.name)
                self.reset(ErrorCodes.INTERNAL_ERROR)
                return
            self._past_http = True  # the head was the 101: the rest is the WebSocket's
            rest = bytes(data[int(exc.args[0]) :])
            if rest:
                self.on_body(rest)
        except httptools.HttpParserError as exc:
            # evenflow's own HTTP/1.1 writer produced it: a bug, but only this stream's
            log.error(
                "stream %d of %s: invalid response: %s", self.stream_id, self.conn.ctx.name, exc
            )
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return
        self.conn.want_flush(self)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        """The DownstreamConnection is done: end the response, or reset a cut-off one."""
        if self._closing or self._finished:
            return
        self._closing = True
        if not self._complete:
            if self._status and not self._has_framing:
                self._end_response()  # a body delimited by the end of the connection
            else:
                self.reset(ErrorCodes.INTERNAL_ERROR)
                return
        self.conn.want_flush(self)

    def abort(self) -> None:
        self._closing = True
        # RFC 8441 §5: a WebSocket cut off (the TCP reset of RFC 6455) is RST_STREAM CANCEL
        self.reset(ErrorCodes.CANCEL if self._upgraded else ErrorCodes.INTERNAL_ERROR)

    def is_closing(self) -> bool:
        return self._closing or self._finished or self.conn.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.conn.extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """After a WebSocket's 101, the tunnel's side takes the stream's bytes over."""
        if not self._upgraded:
            raise NotImplementedError("an HTTP/2 stream carries one HTTP/1.1 exchange")
        assert isinstance(protocol, asyncio.Protocol)
        self._tunnel = protocol
        if self._write_paused:
            protocol.pause_writing()  # the client is not reading: neither does the backend
        if self._request_ended:
            self.conn.loop.call_soon(self._late_eof)  # the client had half-closed already

    def _late_eof(self) -> None:
        if self._tunnel is not None:
            self._tunnel.eof_received()

    def get_protocol(self) -> asyncio.BaseProtocol:
        if self._tunnel is not None:
            return self._tunnel
        assert self.down is not None
        return cast(asyncio.BaseProtocol, self.down)

    def is_reading(self) -> bool:
        return not self._reading_paused

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        unacked, self._unacked = self._unacked, 0
        if unacked and not self._finished:
            self.conn.acknowledge(unacked, self.stream_id)
            self.conn.want_flush(None)

    def can_write_eof(self) -> bool:
        return self._upgraded  # a WebSocket's half-close is END_STREAM

    def write_eof(self) -> None:
        if not self._upgraded:
            self.close()
        elif not self._complete and self._reset_code is None:
            self._end_response()
            self.conn.want_flush(self)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = _HIGH_WATER_BYTES if high is None else high
        self._low = self._high // 4 if low is None else low

    def get_write_buffer_size(self) -> int:
        return self._out_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    # -- llhttp callbacks (the HTTP/1.1 response) --------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        fields, self._fields = self._fields, []
        head_seen, self._head_seen = self._head_seen, None
        if status == 101 and self._websocket:
            # RFC 8441 §5: the WebSocket is open; HTTP/2 says so with a 200 that keeps the
            # stream open, without the HTTP/1.1 handshake's Upgrade, Connection and Accept
            self._upgraded = True
            self._status = 200
            self._head = [
                encode_field(name, value)
                for name, value in response_fields(200, fields, keep_length=False)
                if name != b"sec-websocket-accept"
            ]
            return
        if self._websocket and 200 <= status < 300:
            # a backend that is no WebSocket server answered the handshake as a plain GET; a
            # 2xx would tell the client its WebSocket is open (RFC 8441 §5), so it gets a 502
            self._declined = True
            exchange = self.down.current if self.down is not None else None
            if exchange is not None:  # the log says what the client got, and why
                backend = exchange.backend.address if exchange.backend is not None else "?"
                exchange.status = 502
                exchange.add_failure(f"{backend}: answered the WebSocket handshake with {status}")
            status = 502
            fields = [(b"content-length", b"0")]
        if status < 200:
            # RFC 9113 §8.1: informational responses are HEADERS without END_STREAM
            self._in_interim = True
            if status != 101:  # never asked for: no Upgrade crosses HTTP/2 (§8.6)
                self._interim.append(response_fields(status, fields, keep_length=False))
            return
        self._status = status
        head, length_at, self._has_framing = encoded_response_head(status, fields)
        if length_at >= 0 and status == 204:  # RFC 9110 §8.6: a 204 has no content-length
            del head[length_at]
            length_at = -1
        self._head = head
        self._length_at = length_at
        if head_seen is not None and length_at >= 0 and not self._is_head and status != 304:
            body_length = _content_length(fields)
            if body_length is not None:
                if len(_known_heads) >= _KNOWN_HEADS_LIMIT:
                    _known_heads.clear()
                _known_heads[head_seen] = (status, list(head), length_at, body_length)
        if self._is_head:
            self._end_response()
            raise _HeadResponseEnd

    def on_body(self, body: bytes) -> None:
        if self._declined:
            return  # the body of the 2xx that replaced the 101
        self._out.append(body)
        self._out_bytes += len(body)
        if self._out_bytes > self._high and not self._write_paused & _HELD:
            self._set_write_paused(_HELD, True)

    def on_message_complete(self) -> None:
        if self._upgraded:
            return  # the 101's head: no end, the stream now carries the WebSocket
        if self._in_interim:
            self._in_interim = False
            return
        self._end_response()

    # -- internals ---------------------------------------------------------------------------

    def _known_head(self, data: bytes | bytearray | memoryview) -> bool:
        """Take a final response's head from _known_heads, if `data` starts with one."""
        if self._websocket or self._is_head or not isinstance(data, bytes):
            return False
        end = data.find(b"\r\n\r\n") + 4
        if end < 4:
            return False
        head = data if end == len(data) else data[:end]
        known = _known_heads.get(head)
        if known is None:
            self._head_seen = head
            return False
        status, pieces, length_at, body_length = known
        self._status = status
        self._has_framing = True
        self._head = list(pieces)  # push may drop the content-length from the copy
        self._length_at = length_at
        self._body_left = body_length
        if end < len(data):
            self._known_body(data[end:])
        elif not body_length:
            self._end_response()
        return True

    def _known_body(self, data: bytes | bytearray | memoryview) -> None:
        """Body bytes after a known head, counted against its content-length."""
        size = len(data)
        left = self._body_left
        if size > left:
            # evenflow's own HTTP/1.1 writer wrote past the length: a bug, this stream's only
            log.error("stream %d of %s: body past its length", self.stream_id, self.conn.ctx.name)
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return
        self._body_left = left - size
        if size:
            self.on_body(data if isinstance(data, bytes) else bytes(data))
        if size == left:
            self._end_response()

    def _end_response(self) -> None:
        self._complete = True
        if self._fields:
            self._trailers = response_trailers(self._fields)  # gRPC's grpc-status lives here
            self._fields = []

    def _set_write_paused(self, reason: int, paused: bool) -> None:
        before = self._write_paused
        after = self._write_paused = before | reason if paused else before & ~reason
        protocol = cast("asyncio.Protocol | None", self._tunnel or self.down)
        if protocol is None or bool(before) == bool(after):
            return
        if after:
            protocol.pause_writing()
        else:
            protocol.resume_writing()


def _content_length(fields: list[tuple[bytes, bytes]]) -> int | None:
    """The body length a head's fields give, or None: no content-length, or chunked too."""
    length = None
    for name, value in fields:
        lname = name.lower()
        if lname == b"transfer-encoding":
            return None
        if lname == b"content-length":
            length = int(value)  # llhttp has checked it: digits only
    return length
