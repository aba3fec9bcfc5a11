"""One virtual HTTP/1.1 connection to a backend, carried by streams of a shared HTTP/2 one.

The upstream connection above writes HTTP/1.1 requests to a `StreamTransport` and reads
HTTP/1.1 responses from it, one exchange at a time, as over a keep-alive TCP connection. Each
request becomes a new stream of the backend's `Session` (upstream.py): its head is parsed and
sent as HEADERS, its body as DATA within the send windows, its chunked trailers as a trailing
HEADERS. The stream's response comes back as HTTP/1.1 bytes (upstream_fields.py). Reading
paused = the stream's DATA no longer acknowledged; a shut send window = writing paused. A gRPC
call's grpc-timeout is its deadline here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import h2.errors
import h2.exceptions
import httptools

from evenflow.core import grpc
from evenflow.core.errors import (
    BadRequest,
    DeadlineExceeded,
    ProxyError,
    StreamRefused,
    UpstreamProtocolError,
    UpstreamReset,
)
from evenflow.proxy.http2 import upstream_fields as fields
from evenflow.proxy.http2.upstream_fields import BODY_CHUNKED, BODY_LENGTH, BODY_NONE

if TYPE_CHECKING:
    from evenflow.proxy.http2.upstream import Session

# Receive window of each stream: a stream may have this much in flight towards a paused client,
# so it bounds what one slow client costs (evenflow advertises it in its SETTINGS).
STREAM_WINDOW = 256 * 1024
# Request body bytes held per stream while its send window is shut; past it the exchange is
# told to pause its client (pause_writing), below the low mark to resume.
HOLD_HIGH_BYTES = 64 * 1024
HOLD_LOW_BYTES = 16 * 1024

# StreamTransport._mode before the stream's final response head arrived
_NO_RESPONSE = -1
# PROTOCOL-HTTP2.md: what ends a call whose deadline passed after its answer began
_DEADLINE_TRAILERS = [
    (b"grpc-status", b"%d" % grpc.DEADLINE_EXCEEDED),
    (b"grpc-message", b"Deadline Exceeded"),
]


class StreamTransport(asyncio.Transport):
    """A virtual connection to a backend: one exchange at a time, each a new HTTP/2 stream."""

    __slots__ = (
        "session",
        "protocol",
        "stream_id",
        "_parser",
        "_closed",
        "_url",
        "_fields",
        "_trailers",
        "_in_trailers",
        "_head",
        "_is_head",
        "_request_ended",
        "_end_sent",
        "_out",
        "_out_bytes",
        "_hold_paused",
        "_write_paused",
        "_reading_paused",
        "_unacked",
        "_mode",
        "_left",
        "_deadline",
    )

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.protocol: asyncio.Protocol | None = None
        self.stream_id = 0  # the current stream, 0 between exchanges
        self._parser = httptools.HttpRequestParser(self)
        self._closed = False
        # the request being written, as the parser reports it
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._in_trailers = False
        self._head: list[tuple[bytes, bytes]] | None = None  # HEADERS not sent yet
        self._is_head = False
        self._request_ended = False  # the parser saw the whole request
        self._end_sent = False  # END_STREAM went out
        self._out: deque[bytes] = deque()  # body bytes waiting for send window
        self._out_bytes = 0
        self._hold_paused = False  # _out is over HOLD_HIGH_BYTES
        self._write_paused = False  # what the protocol was last told
        self._reading_paused = False
        # the response
        self._unacked = 0  # DATA bytes relayed but not yet acknowledged to the backend
        self._mode = _NO_RESPONSE
        self._left = 0  # BODY_LENGTH: bytes still to come
        self._deadline: asyncio.TimerHandle | None = None  # grpc-timeout

    # -- the transport the upstream connection sees -----------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self.session.transport
        return default if transport is None else transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closed or self.session.going_away

    def close(self) -> None:
        """Retire this virtual connection (the HTTP/2 connection stays for the others)."""
        self._retire(h2.errors.ErrorCodes.CANCEL, None)

    def abort(self) -> None:
        self._retire(h2.errors.ErrorCodes.CANCEL, None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def is_reading(self) -> bool:
        return not self._reading_paused

    def pause_reading(self) -> None:
        self._reading_paused = True  # DATA is no longer acknowledged: the backend stops

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self._unacked and self.stream_id:
                self._acknowledge()
                self.session.flush()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self._out_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writelines((data,))

    def writelines(self, list_of_data: Any) -> None:
        """HTTP/1.1 request bytes from the upstream connection: parsed, sent on the stream."""
        if self._closed:
            # the HTTP/2 connection ended between this one's pick and its request: nothing
            # was sent, so the request may go anywhere
            fail: Callable[[ProxyError], None] | None = getattr(self.protocol, "fail", None)
            if fail is not None:
                fail(StreamRefused(f"HTTP/2 connection to {self.session.name} closed"))
            return
        try:
            for data in list_of_data:
                self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # a WebSocket handshake: HTTP/2 has no Upgrade (RFC 9113 §8.6); sent as a plain
            # request, the backend declines it with an ordinary response
            self._request_ended = True
            self._parser = httptools.HttpRequestParser(self)  # llhttp stops after an upgrade
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"request not sendable over HTTP/2: {exc}"))
            return
        self._send()

    # -- llhttp callbacks (the request) ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._fields = []
        self._trailers = []
        self._in_trailers = False
        self._request_ended = False
        self._end_sent = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_trailers:
            self._trailers.append((name.lower(), value))
        else:
            self._fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        method = self._parser.get_method()
        self._is_head = method == b"HEAD"
        session = self.session
        self._head = fields.request_headers(
            method, self._url, self._fields, session.scheme, session.authority
        )
        for name, value in self._fields:
            if name == b"grpc-timeout":
                timeout_s = grpc.parse_timeout(value)
                if timeout_s is not None:
                    self._start_deadline(timeout_s, value)
                break

    def on_body(self, body: bytes) -> None:
        self._out.append(body)
        self._out_bytes += len(body)

    def on_message_complete(self) -> None:
        self._request_ended = True

    # -- sending -----------------------------------------------------------------------------

    def _send(self) -> None:
        session = self.session
        conn = session.h2
        head = self._head
        if head is not None:
            self._head = None
            if session.going_away:
                # a GOAWAY came between this connection's pick and its request: the backend
                # will not process new streams here, so the request may go anywhere
                self._fail(StreamRefused(f"{session.name} is going away (GOAWAY)"))
                return
            end = self._request_ended and not self._out and not self._trailers
            try:
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, head, end_stream=end)
            except h2.exceptions.TooManyStreamsError:
                self._fail(StreamRefused(f"{session.name}: no stream free on the connection"))
                return
            except h2.exceptions.ProtocolError as exc:
                self._fail(BadRequest(f"request not sendable over HTTP/2: {exc}"))
                return
            self.stream_id = stream_id
            self._end_sent = end
            self._unacked = 0
            self._mode = _NO_RESPONSE
            session.on_stream_opened(stream_id, self)
        if self.stream_id:
            self._pump()
        session.flush()

    def _pump(self) -> None:
        """Send held body bytes as far as the windows allow; end the stream when all is sent."""
        conn = self.session.h2
        stream_id = self.stream_id
        out = self._out
        try:
            while out:
                window = conn.local_flow_control_window(stream_id)
                if window <= 0:
                    break
                data = out.popleft()
                size = min(window, conn.max_outbound_frame_size)
                if len(data) > size:
                    out.appendleft(data[size:])
                    data = data[:size]
                self._out_bytes -= len(data)
                # the last piece ends the stream itself, rather than an empty DATA frame after
                end = not out and self._request_ended and not self._trailers
                conn.send_data(stream_id, data, end_stream=end)
                self._end_sent = end
            if not out and self._request_ended and not self._end_sent:
                self._end_sent = True
                if self._trailers:
                    conn.send_headers(stream_id, fields.trailer_fields(self._trailers), True)
                else:
                    conn.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            out.clear()  # the backend reset or finished the stream: the rest has no reader
            self._out_bytes = 0
        self._hold_paused = (
            self._out_bytes > HOLD_HIGH_BYTES
            if not self._hold_paused
            else self._out_bytes > HOLD_LOW_BYTES
        )
        self.update_write_pause()

    def on_window_open(self) -> None:
        """The backend opened a send window: send what was held for it."""
        if self._out or (self._request_ended and not self._end_sent):
            self._pump()

    def update_write_pause(self) -> None:
        """Tell the protocol to pause or resume writing when the combined reason changes.

        Only while a stream is in progress: a pause must be undone while the exchange that
        was paused is still the protocol's, so that its client is resumed."""
        paused = bool(self.stream_id) and (self._hold_paused or self.session.writing_paused)
        if paused != self._write_paused and self.protocol is not None and not self._closed:
            self._write_paused = paused
            if paused:
                self.protocol.pause_writing()
            else:
                self.protocol.resume_writing()

    # -- the response, driven by the session --------------------------------------------------

    def on_response(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        try:
            head, mode, length = fields.response_head(headers, ended, self._is_head)
        except fields.FieldError as exc:
            self._fail(UpstreamProtocolError(f"{self.session.name}: {exc}"))
            return
        status = head[9:12]
        if status[:1] == b"1":
            self._relay(head)  # interim (RFC 9110 §15.2): the final response follows
            return
        self._mode = mode
        self._left = length
        if mode == BODY_NONE or (mode == BODY_LENGTH and length == 0):
            self._response_done()
        self._relay(head)

    def on_data(self, data: bytes, flow_controlled: int, ended: bool) -> None:
        self._unacked += flow_controlled
        if not self._reading_paused and self._unacked >= STREAM_WINDOW // 4 and not ended:
            self._acknowledge()
        if not data and not ended:
            return
        mode = self._mode
        if mode == BODY_CHUNKED:
            if ended:
                self._response_done()
                self._relay(fields.chunk(data) + fields.LAST_CHUNK if data else fields.LAST_CHUNK)
            else:
                self._relay(fields.chunk(data))
        elif mode == BODY_LENGTH:
            left = self._left = self._left - len(data)
            if left < 0 or (ended and left > 0):
                self._fail(UpstreamProtocolError(f"{self.session.name}: body/length mismatch"))
                return
            if left == 0:
                self._response_done()
            if data:
                self._relay(data)
        elif data:
            self._fail(UpstreamProtocolError(f"{self.session.name}: body on a bodiless response"))
        elif ended:
            self._response_done()

    def on_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self._response_done()
        if self._mode == BODY_CHUNKED:
            self._relay(fields.last_chunk(trailers))
        elif self._mode == BODY_LENGTH and self._left:
            self._fail(UpstreamProtocolError(f"{self.session.name}: body shorter than its length"))

    def on_reset(self, error_code: int) -> None:
        """The backend reset the stream before its response was complete."""
        self._detach()
        code = error_name(error_code)
        if error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
            self._fail(StreamRefused(f"{self.session.name} refused the stream"))
        else:
            self._fail(UpstreamReset(f"{self.session.name} reset the stream: {code}"))

    def on_connection_lost(self, exc: Exception | None) -> None:
        """The HTTP/2 connection under this virtual one ended."""
        self._detach()
        if self._closed:
            return
        self._closed = True
        protocol = self.protocol
        if protocol is not None:
            protocol.connection_lost(
                exc or ConnectionResetError(f"HTTP/2 connection to {self.session.name} closed")
            )

    def refuse(self) -> None:
        """A GOAWAY came before the backend processed this stream: any request may retry."""
        self._detach()
        self._fail(StreamRefused(f"{self.session.name} is going away (GOAWAY)"))

    # -- internals ---------------------------------------------------------------------------

    def _relay(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol is not None and not self._closed:
            protocol.data_received(data)

    def _acknowledge(self) -> None:
        unacked = self._unacked
        self._unacked = 0
        # the stream may have ended meanwhile: nothing more comes on it then
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.session.h2.increment_flow_control_window(unacked, self.stream_id)

    def _response_done(self) -> None:
        """The response is complete: the stream is over for this virtual connection."""
        stream_id = self.stream_id
        if stream_id and not self._end_sent:
            # the backend answered before the whole request was sent (RFC 9113 §8.1): the
            # rest has no reader, and the connection carries no half-sent request into the next
            self.session.reset(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._request_ended = self._end_sent = True
            self._out.clear()
            self._out_bytes = 0
            self._parser = httptools.HttpRequestParser(self)
        self._detach()

    def _detach(self) -> None:
        stream_id = self.stream_id
        if stream_id:
            self.stream_id = 0
            self.session.streams.pop(stream_id, None)
            self.session.on_stream_done()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._hold_paused = False
        self.update_write_pause()

    def _start_deadline(self, timeout_s: float, value: bytes) -> None:
        """The call's deadline caps how long its backend may take to answer. What the client
        already waited (a retry, a slow connect) is taken off, here and in the grpc-timeout
        the backend sees, as gRPC asks of every hop."""
        exchange = getattr(self.protocol, "exchange", None)
        started_at: float | None = getattr(exchange, "started_at", None)
        if started_at is not None:
            timeout_s -= time.perf_counter() - started_at
            head = self._head
            if head is not None:
                remaining = grpc.format_timeout(max(timeout_s, 0.0))
                self._head = [
                    (name, remaining if name == b"grpc-timeout" else field) for name, field in head
                ]
        self._deadline = self.session.loop.call_later(
            max(timeout_s, 0.0), self._on_deadline, value.decode("latin-1")
        )

    def _on_deadline(self, value: str) -> None:
        self._deadline = None
        stream_id = self.stream_id
        if self._mode != BODY_CHUNKED or not stream_id:
            self._fail(DeadlineExceeded(f"no complete response within grpc-timeout {value}"))
            return
        # the answer has begun, so it cannot become an error response: it ends as a gRPC
        # server ends a call past its deadline, DEADLINE_EXCEEDED in the trailers
        self.session.reset(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._end_sent = True
        self._response_done()
        self.session.flush()
        self._relay(fields.last_chunk(_DEADLINE_TRAILERS))

    def _fail(self, error: ProxyError) -> None:
        """Fail the exchange on this virtual connection and retire it (its stream is reset)."""
        stream_id = self.stream_id
        if stream_id:
            self.session.reset(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._hold_paused = False
        self._detach()
        protocol = self.protocol
        # an UpstreamConnection fails its exchange with `error`, then aborts this transport
        fail: Callable[[ProxyError], None] | None = getattr(protocol, "fail", None)
        if fail is not None and not self._closed:
            fail(error)
        else:
            self._retire(h2.errors.ErrorCodes.CANCEL, error)

    def _retire(self, code: int, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        stream_id = self.stream_id
        if stream_id:
            self.session.reset(stream_id, code)
        self._detach()
        self._out.clear()
        self._out_bytes = 0
        session = self.session
        session.virtuals.discard(self)
        protocol = self.protocol
        if protocol is not None:
            # as a socket transport does: the protocol hears of the close on the next turn
            session.loop.call_soon(protocol.connection_lost, exc)
        session.flush()
        session.close_if_unused()


def error_name(code: int) -> str:
    """An HTTP/2 error code by its name (RFC 9113 §7): "CANCEL", "REFUSED_STREAM"."""
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error {code}"
