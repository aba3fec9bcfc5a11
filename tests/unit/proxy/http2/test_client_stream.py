"""One client stream as the transport of a DownstreamConnection, here a recording stand-in:
the HTTP/1.1 bytes each request becomes, the HTTP/2 frames each HTTP/1.1 response becomes, and
flow control as backpressure both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)

from .harness import PEER, Pair

MakePair = Callable[..., Pair]


class FakeDown(asyncio.Protocol):
    """Stands in for the stream's DownstreamConnection: records what the stream feeds it."""

    def __init__(self, ctx: object, *, stream: object) -> None:
        assert stream is not None
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.lost = False
        self.paused = 0  # pause_writing calls
        self.resumed = 0

    def recycle(self) -> bool:
        return False  # every stream gets its own, for the tests to see what each was fed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def respond(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


@pytest.fixture
def downs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeDown]]:
    made: list[FakeDown] = []

    def factory(ctx: object, *, stream: object) -> FakeDown:
        down = FakeDown(ctx, stream=stream)
        made.append(down)
        return down

    monkeypatch.setattr("evenflow.proxy.http2.client_stream.new_downstream", factory)
    yield made


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# --- requests ---------------------------------------------------------------------------------


async def test_a_get_is_fed_as_one_http11_head(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    p.request("/x?y=1", ("accept", "*/*"))
    (down,) = downs
    assert bytes(down.received) == b"GET /x?y=1 HTTP/1.1\r\nhost: t\r\naccept: */*\r\n\r\n"


async def test_a_get_not_ended_by_its_headers_waits_for_the_end(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    sid = p.request("/x", end=False)
    assert downs[0].received == b""
    p.client.end_stream(sid)  # an empty DATA frame with END_STREAM
    p.send()
    # no body: not a chunked GET upstream
    assert bytes(downs[0].received) == b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"


async def test_a_body_without_length_goes_as_chunks_with_trailers(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    sid = p.request("/up", ("content-type", "application/grpc"), method="POST", end=False)
    p.client.send_data(sid, b"abc")
    p.client.send_data(sid, b"de")
    p.client.send_headers(sid, [("x-sum", "5"), ("content-length", "9")], end_stream=True)
    p.send()
    assert bytes(downs[0].received) == (
        b"POST /up HTTP/1.1\r\nhost: t\r\ncontent-type: application/grpc\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 5\r\n\r\n"  # a framing field never trails
    )


async def test_a_body_with_length_goes_as_is(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    sid = p.request("/up", ("content-length", "5"), method="PUT", end=False)
    p.client.send_data(sid, b"hello", end_stream=True)
    p.send()
    assert bytes(downs[0].received) == (
        b"PUT /up HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello"
    )


async def test_malformed_trailers_reset_the_stream(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair(client_config=H2Configuration(header_encoding=None, validate_outbound_headers=False))
    sid = p.request("/up", method="POST", end=False)
    p.client.send_headers(sid, [(":path", "/x")], end_stream=True)
    p.send()
    events = await p.events()
    assert {e.stream_id: e.error_code for e in of(events, StreamReset)} == {
        sid: ErrorCodes.PROTOCOL_ERROR
    }
    assert downs[0].lost


async def test_pausing_reading_withholds_the_window(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    sid = p.request("/up", method="POST", end=False)
    await p.events()
    (down,) = downs
    assert down.transport is not None
    down.transport.pause_reading()  # the backend is not reading
    for _ in range(15):  # past half the stream's window: acknowledged, it would be updated
        p.client.send_data(sid, b"x" * 10_000)
    p.send()
    events = await p.events()
    assert not [e for e in of(events, WindowUpdated) if e.stream_id == sid]
    assert len(down.received) > 150_000  # what arrived was still passed on
    down.transport.resume_reading()
    events = await p.events()
    assert [e for e in of(events, WindowUpdated) if e.stream_id == sid]


# --- responses --------------------------------------------------------------------------------


async def test_a_response_becomes_headers_and_data(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    sid = p.request("/x")
    downs[0].respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-A: b\r\n\r\nhello"
    )
    events = await p.events()
    (response,) = of(events, ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"content-length", b"5"), (b"x-a", b"b")]
    assert b"".join(e.data for e in of(events, DataReceived)) == b"hello"
    assert [e.stream_id for e in of(events, StreamEnded)] == [sid]
    assert downs[0].lost  # released once the stream is over
    assert p.conn.streams == {}


async def test_a_response_in_pieces_keeps_its_order(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    await p.events()  # the connection's SETTINGS
    p.request("/x")
    events = []
    for piece in (b"HTTP/1.1 200 OK\r\nContent-", b"Length: 6\r\n\r\nab", b"cd", b"ef"):
        downs[0].respond(piece)
        events += await p.events()
    assert [type(e) for e in events] == [
        ResponseReceived,
        DataReceived,
        DataReceived,
        DataReceived,
        StreamEnded,
    ]
    assert b"".join(e.data for e in of(events, DataReceived)) == b"abcdef"


def _stream_of(down: FakeDown) -> Any:
    assert down.transport is not None
    return down.transport


_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Known: %d\r\n\r\n"


async def test_a_head_seen_before_is_known_without_a_parser(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    """The second identical head is taken from the known heads: the same HEADERS and DATA,
    no llhttp parser made, the body counted against the content-length, even in pieces."""
    p = pair()
    await p.events()
    head = _HEAD % id(p)  # a head no other test has made known
    responses = []
    parsed = []  # whether llhttp was made to read the head
    for pieces in ([head + b"abcdef"], [head, b"ab", b"cdef"]):
        sid = p.request("/x")
        down = downs[-1]
        stream = _stream_of(down)
        for piece in pieces:
            down.respond(piece)
        parsed.append(stream._parser is not None)  # before the flush finishes the stream
        events = await p.events()
        (response,) = of(events, ResponseReceived)
        body = b"".join(e.data for e in of(events, DataReceived))
        responses.append((response.headers, body, [e.stream_id for e in of(events, StreamEnded)]))
        assert responses[-1][2] == [sid]
        assert down.lost
    assert parsed == [True, False]
    (first_headers, first_body, _), (second_headers, second_body, _) = responses
    assert (
        first_headers
        == second_headers
        == [
            (b":status", b"200"),
            (b"content-length", b"6"),
            (b"x-known", b"%d" % id(p)),
        ]
    )
    assert first_body == second_body == b"abcdef"


async def test_a_known_head_that_ends_the_stream_drops_its_content_length(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    await p.events()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Empty: %d\r\n\r\n" % id(p)
    for _ in range(2):
        sid = p.request("/x")
        downs[-1].respond(head)
        events = await p.events()
        (response,) = of(events, ResponseReceived)
        assert response.headers == [(b":status", b"200"), (b"x-empty", b"%d" % id(p))]
        assert response.stream_ended is not None and response.stream_ended.stream_id == sid


async def test_an_interim_head_is_never_known_as_the_final_one(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    await p.events()
    final = _HEAD % (id(p) + 1)
    for _ in range(2):
        p.request("/up", method="POST")
        downs[-1].respond(b"HTTP/1.1 100 Continue\r\n\r\n")
        downs[-1].respond(final + b"abcdef")
        events = await p.events()
        statuses = [dict(e.headers)[b":status"] for e in of(events, (ResponseReceived,))]
        assert statuses == [b"200"]
        assert b"".join(e.data for e in of(events, DataReceived)) == b"abcdef"


async def test_a_known_heads_body_past_its_length_resets_the_stream(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    await p.events()
    head = _HEAD % (id(p) + 2)
    p.request("/x")
    downs[-1].respond(head + b"abcdef")
    await p.events()
    sid = p.request("/x")
    downs[-1].respond(head + b"abcdefEXTRA")
    events = await p.events()
    assert {e.stream_id: e.error_code for e in of(events, StreamReset)} == {
        sid: ErrorCodes.INTERNAL_ERROR
    }


async def test_chunked_trailers_become_http2_trailers(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    sid = p.request("/pkg.S/M", ("content-type", "application/grpc"), method="POST")
    downs[0].respond(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n"
        b"\r\n5\r\n\x00\x00\x00\x00\x00\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"
    )
    events = await p.events()
    (response,) = of(events, ResponseReceived)
    assert dict(response.headers)[b"content-type"] == b"application/grpc"
    assert b"transfer-encoding" not in dict(response.headers)
    assert b"".join(e.data for e in of(events, DataReceived)) == b"\x00" * 5
    (trailers,) = of(events, TrailersReceived)
    assert trailers.headers == [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]
    assert trailers.stream_ended is not None and trailers.stream_ended.stream_id == sid


async def test_a_head_response_ends_with_its_headers(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    p.request("/x", method="HEAD")
    downs[0].respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    events = await p.events()
    (response,) = of(events, ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"content-length", b"10")]
    assert response.stream_ended is not None


async def test_interim_responses_go_first(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    p.request("/x", ("expect", "100-continue"), method="POST", end=False)
    downs[0].respond(b"HTTP/1.1 100 Continue\r\n\r\n")
    events = await p.events()
    assert [e.headers for e in of(events, InformationalResponseReceived)] == [
        [(b":status", b"100")]
    ]
    downs[0].respond(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
    events = await p.events()
    (response,) = of(events, ResponseReceived)
    assert response.headers == [(b":status", b"204")]
    assert response.stream_ended is not None


async def test_a_response_before_the_request_ends_stops_the_upload(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    sid = p.request("/up", method="POST", end=False)
    downs[0].respond(b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n")
    events = await p.events()
    assert of(events, ResponseReceived)[0].stream_ended is not None
    # RFC 9113 §8.1: after a complete response, RST_STREAM NO_ERROR tells the client to stop
    assert {e.stream_id: e.error_code for e in of(events, StreamReset)} == {
        sid: ErrorCodes.NO_ERROR
    }


async def test_flow_control_holds_the_body_and_pauses_the_backend(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair(client_window=16384)
    await p.events()
    sid = p.request("/big")
    size = 300_000
    (down,) = downs
    down.respond(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"z" * size)
    assert down.paused == 1  # more than the high-water mark is held: the backend must wait
    received = 0
    rounds = 0
    ended = False
    while not ended:
        events = await p.events()
        got = sum(len(e.data) for e in of(events, DataReceived))
        assert got <= 65535  # never more than the client's windows allowed
        received += got
        ended = bool(of(events, StreamEnded))
        for e in of(events, DataReceived):
            p.client.acknowledge_received_data(e.flow_controlled_length, sid)
        p.send()
        rounds += 1
        assert rounds < 100
    assert received == size
    assert down.resumed == 1 and down.paused == 1


async def test_closing_before_a_response_resets_the_stream(
    pair: MakePair, downs: list[FakeDown]
) -> None:
    p = pair()
    sid = p.request("/x")
    assert downs[0].transport is not None
    downs[0].transport.close()
    events = await p.events()
    assert {e.stream_id: e.error_code for e in of(events, StreamReset)} == {
        sid: ErrorCodes.INTERNAL_ERROR
    }


async def test_a_cut_off_response_is_reset(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    sid = p.request("/x")
    downs[0].respond(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    assert downs[0].transport is not None
    downs[0].transport.abort()
    events = await p.events()
    assert {e.stream_id: e.error_code for e in of(events, StreamReset)} == {
        sid: ErrorCodes.INTERNAL_ERROR
    }


async def test_a_body_until_close_ends_at_close(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    p.request("/x")
    downs[0].respond(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
    assert downs[0].transport is not None
    downs[0].transport.close()
    events = await p.events()
    assert b"".join(e.data for e in of(events, DataReceived)) == b"all of it"
    assert of(events, StreamEnded) and not of(events, StreamReset)


async def test_a_client_reset_releases_the_stream(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    sid = p.request("/x", method="POST", end=False)
    p.client.reset_stream(sid, ErrorCodes.CANCEL)
    p.send()
    assert downs[0].lost
    assert p.conn.streams == {}


async def test_transport_info_is_the_connection_s(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    p.request("/x")
    transport = downs[0].transport
    assert transport is not None
    assert transport.get_extra_info("peername") == PEER
    assert transport.get_extra_info("ssl_object") is None
    assert not transport.can_write_eof()
    assert not transport.is_closing()


async def test_a_full_socket_pauses_every_stream(pair: MakePair, downs: list[FakeDown]) -> None:
    p = pair()
    for _ in range(3):
        p.request("/x", method="POST", end=False)
    p.conn.pause_writing()
    assert [d.paused for d in downs] == [1, 1, 1]
    p.conn.resume_writing()
    assert [d.resumed for d in downs] == [1, 1, 1]
