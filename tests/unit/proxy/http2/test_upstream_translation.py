"""HTTP/1.1 ↔ HTTP/2 translation towards backends, sans-IO.

The field functions are checked directly. The session is driven by hand: evenflow's `Session`
writes into a fake socket whose bytes a server-side h2 `H2Connection` (the backend) reads, and
the backend's bytes are fed back. The upstream connection above a virtual transport is a
recorder, so each test sees exactly the HTTP/1.1 bytes evenflow's parser would get. Timers
and call_soon are recorded by a manual loop: no time passes, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from evenflow.core.errors import DeadlineExceeded, ProxyError, StreamRefused, UpstreamReset
from evenflow.proxy.http2 import upstream_fields as fields
from evenflow.proxy.http2.upstream import Session
from evenflow.proxy.http2.upstream_stream import HOLD_HIGH_BYTES, STREAM_WINDOW, StreamTransport

# --- the field functions ----------------------------------------------------------------------


def test_request_fields_become_pseudo_headers_and_lose_connection_specific_ones() -> None:
    head = fields.request_headers(
        b"POST",
        b"/users.v1.Users/Get?x=1",
        [
            (b"host", b"api.test:8080"),
            (b"connection", b"keep-alive, x-hop"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-connection", b"keep-alive"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
            (b"x-hop", b"1"),
            (b"te", b"trailers"),
            (b"content-type", b"application/json"),
            (b"x-request-id", b"r1"),
        ],
        b"http",
        b"10.0.0.1:50051",
    )
    assert head == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"api.test:8080"),
        (b":path", b"/users.v1.Users/Get?x=1"),
        (b"content-type", b"application/json"),
        (b"x-request-id", b"r1"),
        (b"te", b"trailers"),
    ]


def test_te_other_than_trailers_is_dropped() -> None:
    head = fields.request_headers(b"GET", b"/", [(b"te", b"gzip")], b"https", b"b:1")
    assert (b"te", b"gzip") not in head and not any(n == b"te" for n, _ in head)


def test_a_grpc_call_always_carries_te_trailers() -> None:
    # an HTTP/1.1 hop may drop TE as hop-by-hop; gRPC servers refuse a call without it
    head = fields.request_headers(
        b"POST", b"/s/M", [(b"content-type", b"application/grpc+proto")], b"http", b"b:1"
    )
    assert head[-1] == (b"te", b"trailers")


def test_absolute_form_target_gives_authority_and_path() -> None:
    head = fields.request_headers(
        b"GET", b"http://api.test:81/a/b?c=d", [(b"host", b"other")], b"http", b"b:1"
    )
    assert head[2:4] == [(b":authority", b"api.test:81"), (b":path", b"/a/b?c=d")]


def test_without_host_the_backend_address_is_the_authority() -> None:
    head = fields.request_headers(b"GET", b"/", [], b"http", b"10.0.0.1:80")
    assert head[2] == (b":authority", b"10.0.0.1:80")


def test_response_with_length_keeps_it_and_passes_the_body() -> None:
    head, mode, length = fields.response_head(
        [(b":status", b"200"), (b"content-length", b"5"), (b"x-a", b"1")], False, False
    )
    assert head == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\n"
    assert (mode, length) == (fields.BODY_LENGTH, 5)


def test_response_without_length_is_framed_as_chunks() -> None:
    head, mode, _ = fields.response_head(
        [(b":status", b"200"), (b"content-type", b"application/grpc")], False, False
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert mode == fields.BODY_CHUNKED


def test_trailers_only_response_is_an_empty_response_with_its_fields_as_headers() -> None:
    head, mode, length = fields.response_head(
        [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"5"),
            (b"grpc-message", b"not found"),
        ],
        True,
        False,
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 5\r\n"
        b"grpc-message: not found\r\ncontent-length: 0\r\n\r\n"
    )
    assert (mode, length) == (fields.BODY_NONE, 0)


@pytest.mark.parametrize(
    ("status", "ended", "is_head"),
    [(b"204", False, False), (b"304", True, False), (b"200", False, True), (b"200", True, True)],
)
def test_bodiless_responses_get_no_framing(status: bytes, ended: bool, is_head: bool) -> None:
    head, mode, _ = fields.response_head([(b":status", status)], ended, is_head)
    assert mode == fields.BODY_NONE
    assert b"content-length" not in head and b"transfer-encoding" not in head


def test_unknown_status_gets_an_empty_reason() -> None:
    head, _, _ = fields.response_head([(b":status", b"299")], True, False)
    assert head.startswith(b"HTTP/1.1 299 \r\n")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-a", b"1")],
        [(b":status", b"20")],
        [(b":status", b"2x0")],
        [(b":status", b"200"), (b"content-length", b"-1")],
        [(b":status", b"200"), (b"content-length", b"5"), (b"content-length", b"6")],
    ],
)
def test_untranslatable_responses_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(fields.FieldError):
        fields.response_head(headers, False, False)


def test_trailers_become_the_last_chunk() -> None:
    assert fields.last_chunk([(b"grpc-status", b"0"), (b"grpc-message", b"")]) == (
        b"0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n"
    )
    assert fields.last_chunk([]) == b"0\r\n\r\n"
    assert fields.chunk(b"hello") == b"5\r\nhello\r\n"


# --- a session driven by hand -----------------------------------------------------------------


class Timer:
    def __init__(self, delay: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.delay = delay
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        assert not self.cancelled
        self.callback(*self.args)


class ManualLoop:
    """call_soon and call_later, recorded for the test to run; futures from a real loop."""

    def __init__(self) -> None:
        self.real = asyncio.new_event_loop()
        self.soon: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.timers: list[Timer] = []

    def create_future(self) -> asyncio.Future[Any]:
        return self.real.create_future()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.soon.append((callback, args))

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(delay, callback, args)
        self.timers.append(timer)
        return timer

    def run_soon(self) -> None:
        while self.soon:
            callback, args = self.soon.pop(0)
            callback(*args)


class Socket:
    """The real connection under the session: what it writes is kept for the backend."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data


class Recorder(asyncio.Protocol):
    """Stands in for UpstreamConnection: the HTTP/1.1 bytes it gets, how it was told to stop."""

    def __init__(self) -> None:
        self.transport: StreamTransport | None = None
        self.received = bytearray()
        self.lost: list[Exception | None] = []
        self.failed: list[ProxyError] = []
        self.writing: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(StreamTransport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)

    def pause_writing(self) -> None:
        self.writing.append("pause")

    def resume_writing(self) -> None:
        self.writing.append("resume")

    def fail(self, error: ProxyError) -> None:
        # as UpstreamConnection.fail: the exchange fails, the connection is dropped
        self.failed.append(error)
        assert self.transport is not None
        self.transport.abort()

    def take(self) -> bytes:
        data = bytes(self.received)
        self.received.clear()
        return data


class Backend:
    """evenflow's session to a backend, and the backend's server-side h2 connection."""

    def __init__(self, loop: ManualLoop, settings: dict[int, int] | None = None) -> None:
        self.loop = loop
        self.socket = Socket()
        self.session = Session(
            cast(asyncio.AbstractEventLoop, loop),
            ("10.0.0.1", 50051, "10.0.0.1", 0),
            "10.0.0.1:50051",
            False,
            b"10.0.0.1:50051",
        )
        self.session.connection_made(cast(asyncio.Transport, self.socket))
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.events: list[h2.events.Event] = []
        self.exchange()

    def open(self) -> tuple[StreamTransport, Recorder]:
        virtual = self.session.open_virtual()
        protocol = Recorder()
        virtual.protocol = protocol
        protocol.connection_made(virtual)
        return virtual, protocol

    def exchange(self) -> list[h2.events.Event]:
        """Deliver what each side has written to the other; the backend's new events."""
        new: list[h2.events.Event] = []
        while True:
            data = self.socket.take()
            if data:
                new += self.h2.receive_data(data)
            back = self.h2.data_to_send()
            if back:
                self.session.data_received(back)
            if not data and not back:
                break
        self.events += new
        return new

    def respond(
        self,
        stream_id: int,
        headers: list[tuple[bytes, bytes]],
        *data: bytes,
        trailers: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> None:
        self.h2.send_headers(stream_id, headers, end_stream=end and not data and not trailers)
        frames = [p[i : i + 16384] for p in data for i in range(0, len(p), 16384)]
        for i, piece in enumerate(frames):
            last = end and i == len(frames) - 1 and not trailers
            self.h2.send_data(stream_id, piece, end_stream=last)
        if trailers is not None:
            self.h2.send_headers(stream_id, trailers, end_stream=True)
        self.exchange()


def of(events: list[h2.events.Event], kind: type[h2.events.Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def loop() -> Iterator[ManualLoop]:
    manual = ManualLoop()
    yield manual
    manual.real.close()


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: api.test\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n"
GRPC_HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def test_a_get_is_one_headers_frame_ending_the_stream(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, _ = backend.open()
    virtual.writelines([GET])
    events = backend.exchange()
    (request,) = of(events, h2.events.RequestReceived)
    assert request.stream_id == 1
    assert request.headers == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"api.test"),
        (b":path", b"/a?b=1"),
        (b"accept", b"*/*"),
    ]
    assert request.stream_ended is not None


def test_a_response_with_a_length_arrives_as_sent(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GET])
    backend.exchange()
    backend.respond(1, [(b":status", b"200"), (b"content-length", b"11")], b"hello", b" world")
    assert protocol.take() == b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world"
    assert virtual.stream_id == 0  # done: the virtual connection is free for the next request


def test_a_chunked_request_sends_data_and_its_trailers(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, _ = backend.open()
    virtual.writelines(
        [
            b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n",
        ]
    )
    events = backend.exchange()
    assert of(events, h2.events.RequestReceived)[0].stream_ended is None
    assert [e.data for e in of(events, h2.events.DataReceived)] == [b"hello"]
    virtual.writelines([b"5\r\nworld\r\n", b"0\r\nX-Checksum: abc\r\n\r\n"])
    events = backend.exchange()
    assert [e.data for e in of(events, h2.events.DataReceived)] == [b"world"]
    (trailers,) = of(events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-checksum", b"abc")]
    assert of(events, h2.events.StreamEnded)


def test_a_grpc_response_is_chunked_and_its_trailers_end_the_last_chunk(
    loop: ManualLoop,
) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines(
        [
            b"POST /users.v1.Users/List HTTP/1.1\r\nHost: h\r\ncontent-type: application/grpc\r\n"
            b"content-length: 5\r\n\r\n",
            b"\x00\x00\x00\x00\x00",
        ]
    )
    backend.exchange()
    backend.respond(
        1,
        GRPC_HEAD,
        b"\x00\x00\x00\x00\x01a",
        b"\x00\x00\x00\x00\x01b",
        trailers=[(b"grpc-status", b"0"), (b"grpc-message", b"fine")],
    )
    assert protocol.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n"
        b"\r\n6\r\n\x00\x00\x00\x00\x01a\r\n6\r\n\x00\x00\x00\x00\x01b\r\n"
        b"0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"
    )


def test_a_trailers_only_response_is_an_empty_response(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GET])
    backend.exchange()
    backend.respond(1, [*GRPC_HEAD, (b"grpc-status", b"14"), (b"grpc-message", b"down")])
    assert protocol.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n"
        b"grpc-message: down\r\ncontent-length: 0\r\n\r\n"
    )


def test_an_unframed_body_ending_with_the_stream_ends_the_chunks(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GET])
    backend.exchange()
    backend.respond(1, [(b":status", b"200")], b"abc")
    assert protocol.take() == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )


def test_an_interim_response_comes_before_the_final_one(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines(
        [b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"]
    )
    backend.exchange()
    backend.respond(1, [(b":status", b"100")], end=False)
    assert protocol.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    virtual.writelines([b"ok"])
    assert [e.data for e in of(backend.exchange(), h2.events.DataReceived)] == [b"ok"]
    backend.respond(1, [(b":status", b"201"), (b"content-length", b"0")])
    assert protocol.take() == b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"


def test_the_next_request_on_a_kept_connection_opens_the_next_stream(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    for stream_id in (1, 3, 5):
        virtual.writelines([GET])
        (request,) = of(backend.exchange(), h2.events.RequestReceived)
        assert request.stream_id == stream_id
        backend.respond(stream_id, [(b":status", b"204")])
        assert protocol.take() == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert backend.socket.closed is False
    assert backend.session.streams == {}


def test_a_shut_send_window_holds_the_body_and_pauses_the_writer(loop: ManualLoop) -> None:
    backend = Backend(loop, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    virtual, protocol = backend.open()
    size = 3 * HOLD_HIGH_BYTES
    virtual.writelines([b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % size])
    virtual.writelines([b"x" * size])
    events = backend.exchange()
    assert sum(len(e.data) for e in of(events, h2.events.DataReceived)) == 1000
    assert protocol.writing == ["pause"]
    assert virtual.get_write_buffer_size() == size - 1000
    # the backend reads it all: the window opens, the rest goes, the writer resumes
    backend.h2.increment_flow_control_window(size)
    backend.h2.increment_flow_control_window(size, stream_id=1)
    events = backend.exchange()
    assert sum(len(e.data) for e in of(events, h2.events.DataReceived)) == size - 1000
    assert of(events, h2.events.StreamEnded)
    assert protocol.writing == ["pause", "resume"]


def test_a_paused_reader_holds_back_the_stream_window(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GET])
    backend.exchange()
    virtual.pause_reading()
    backend.respond(1, [(b":status", b"200")], b"y" * (STREAM_WINDOW // 2), end=False)
    stream_updates = [e for e in backend.events if isinstance(e, h2.events.WindowUpdated)]
    assert [e for e in stream_updates if e.stream_id == 1] == []
    assert backend.h2.local_flow_control_window(1) == STREAM_WINDOW // 2
    virtual.resume_reading()
    (update,) = [e for e in of(backend.exchange(), h2.events.WindowUpdated) if e.stream_id == 1]
    assert update.delta == STREAM_WINDOW // 2
    assert len(protocol.take()) > STREAM_WINDOW // 2  # relayed while paused: the window bounds it


def test_a_reset_stream_fails_the_exchange(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GET])
    backend.exchange()
    backend.h2.reset_stream(1, h2.errors.ErrorCodes.INTERNAL_ERROR)
    backend.exchange()
    (error,) = protocol.failed
    assert isinstance(error, UpstreamReset) and not error.retry_safe
    assert error.detail == "10.0.0.1:50051 reset the stream: INTERNAL_ERROR"
    assert virtual.is_closing()
    loop.run_soon()
    assert protocol.lost == [None]


def test_a_refused_stream_may_be_retried_anywhere(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"])
    backend.exchange()
    backend.h2.reset_stream(1, h2.errors.ErrorCodes.REFUSED_STREAM)
    backend.exchange()
    (error,) = protocol.failed
    assert isinstance(error, StreamRefused) and error.retry_safe


def test_goaway_refuses_later_streams_and_lets_earlier_ones_finish(loop: ManualLoop) -> None:
    backend = Backend(loop)
    first, first_protocol = backend.open()
    second, second_protocol = backend.open()
    idle, idle_protocol = backend.open()
    first.writelines([GET])
    second.writelines([GET])
    backend.exchange()
    backend.h2.close_connection(last_stream_id=1)
    # the backend's h2 closes itself too (python-hyper/h2#1181): reopen it to finish stream 1
    backend.h2.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
    backend.exchange()
    (error,) = second_protocol.failed
    assert isinstance(error, StreamRefused) and error.retry_safe
    assert backend.session.has_room() is False  # new exchanges go to a new connection
    assert idle.is_closing()  # so its pool does not reuse it
    backend.respond(1, [(b":status", b"200"), (b"content-length", b"2")], b"ok")
    assert first_protocol.take().endswith(b"\r\n\r\nok")
    assert first_protocol.failed == []
    assert backend.socket.closed  # every stream done: the connection is closed
    backend.session.connection_lost(None)
    assert len(idle_protocol.lost) == 1  # and the idle one goes with it


def test_a_request_on_a_connection_that_ended_meanwhile_may_go_elsewhere(
    loop: ManualLoop,
) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    backend.h2.close_connection()
    backend.exchange()  # GOAWAY, nothing in progress: the connection closes
    backend.session.connection_lost(None)
    assert len(protocol.lost) == 1
    virtual.writelines([GET])  # what a pool that had just picked it would do
    (error,) = protocol.failed
    assert isinstance(error, StreamRefused) and error.retry_safe


def test_a_lost_connection_is_lost_for_every_virtual_connection(loop: ManualLoop) -> None:
    backend = Backend(loop)
    busy, busy_protocol = backend.open()
    _, idle_protocol = backend.open()
    busy.writelines([GET])
    backend.exchange()
    reset = ConnectionResetError("reset by peer")
    backend.session.connection_lost(reset)
    assert busy_protocol.lost == [reset]
    assert idle_protocol.lost == [reset]
    assert backend.session.has_room() is False


def test_closing_a_virtual_connection_is_cheap_and_the_last_one_closes_the_real_one(
    loop: ManualLoop,
) -> None:
    backend = Backend(loop)
    one, one_protocol = backend.open()
    two, _ = backend.open()
    one.close()
    loop.run_soon()
    assert one_protocol.lost == [None]
    assert not backend.socket.closed
    two.close()
    events = (
        backend.exchange()
        if not backend.socket.closed
        else backend.h2.receive_data(backend.socket.take())
    )
    assert of(events, h2.events.ConnectionTerminated)
    assert backend.socket.closed


def test_abort_resets_the_stream_in_progress(loop: ManualLoop) -> None:
    backend = Backend(loop)
    one, _ = backend.open()
    backend.open()  # keeps the HTTP/2 connection open
    one.writelines([GET])
    backend.exchange()
    one.abort()
    (reset,) = of(backend.exchange(), h2.events.StreamReset)
    assert (reset.stream_id, reset.error_code) == (1, h2.errors.ErrorCodes.CANCEL)


GRPC_CALL = (
    b"POST /users.v1.Users/Get HTTP/1.1\r\nHost: h\r\ncontent-type: application/grpc\r\n"
    b"grpc-timeout: 250m\r\ncontent-length: 0\r\n\r\n"
)


def test_grpc_timeout_fails_a_call_without_an_answer_and_resets_its_stream(
    loop: ManualLoop,
) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    backend.open()
    virtual.writelines([GRPC_CALL])
    (request,) = of(backend.exchange(), h2.events.RequestReceived)
    assert (b"grpc-timeout", b"250m") in request.headers  # the backend sees the deadline too
    (timer,) = loop.timers
    assert timer.delay == pytest.approx(0.25)
    timer.fire()
    (error,) = protocol.failed
    assert isinstance(error, DeadlineExceeded)
    assert error.grpc_status == 4 and error.status == 504
    (reset,) = of(backend.exchange(), h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL


class _Started:
    """What the stream reads of the exchange it carries: when the client's request began."""

    def __init__(self, waited_s: float) -> None:
        self.started_at = time.perf_counter() - waited_s


def test_grpc_timeout_is_what_is_left_of_the_clients_deadline(loop: ManualLoop) -> None:
    # the client has waited 100 ms already (a retry after a failed attempt, a slow connect):
    # the backend is told, and evenflow enforces, what is left of its 250 ms
    backend = Backend(loop)
    virtual, protocol = backend.open()
    backend.open()
    protocol.exchange = _Started(0.1)  # type: ignore[attr-defined]
    virtual.writelines([GRPC_CALL])
    (request,) = of(backend.exchange(), h2.events.RequestReceived)
    value = dict(request.headers)[b"grpc-timeout"]
    assert value.endswith(b"m") and 100 <= int(value[:-1]) <= 150, value
    (timer,) = loop.timers
    assert 0.1 <= timer.delay <= 0.15


def test_a_grpc_deadline_already_past_fails_at_once(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    backend.open()
    protocol.exchange = _Started(0.3)  # type: ignore[attr-defined]
    virtual.writelines([GRPC_CALL])
    (request,) = of(backend.exchange(), h2.events.RequestReceived)
    assert dict(request.headers)[b"grpc-timeout"] == b"1m"  # never zero: gRPC has no "0"
    (timer,) = loop.timers
    assert timer.delay == 0.0
    timer.fire()
    (error,) = protocol.failed
    assert isinstance(error, DeadlineExceeded)


def test_grpc_timeout_after_the_answer_began_ends_it_with_deadline_exceeded(
    loop: ManualLoop,
) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GRPC_CALL])
    backend.exchange()
    backend.respond(1, GRPC_HEAD, b"\x00\x00\x00\x00\x01a", end=False)
    loop.timers[0].fire()
    assert protocol.take().endswith(
        b"6\r\n\x00\x00\x00\x00\x01a\r\n0\r\ngrpc-status: 4\r\ngrpc-message: Deadline Exceeded"
        b"\r\n\r\n"
    )
    assert protocol.failed == []
    assert of(backend.exchange(), h2.events.StreamReset)
    assert virtual.stream_id == 0 and not virtual.is_closing()  # the connection stays usable


def test_a_complete_answer_cancels_the_deadline(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, _ = backend.open()
    virtual.writelines([GRPC_CALL])
    backend.exchange()
    backend.respond(1, [*GRPC_HEAD, (b"grpc-status", b"0")])
    assert loop.timers[0].cancelled


def test_a_body_shorter_than_its_length_loses_the_connection(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([GET])
    backend.exchange()
    backend.respond(1, [(b":status", b"200"), (b"content-length", b"10")], b"short")
    # h2 treats a wrong length as a connection error (RFC 9113 §8.1.1 allows a stream one)
    (lost,) = protocol.lost
    assert isinstance(lost, ConnectionError) and "protocol error" in str(lost)
    assert backend.socket.closed


def test_an_answer_before_the_whole_request_resets_the_rest(loop: ManualLoop) -> None:
    backend = Backend(loop)
    virtual, protocol = backend.open()
    virtual.writelines([b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"])
    backend.exchange()
    backend.respond(1, [(b":status", b"413"), (b"content-length", b"0")])
    assert protocol.take().startswith(b"HTTP/1.1 413 ")
    (reset,) = of(backend.events, h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
