"""evenflow's HTTP/2 connection driven by an h2 client: requests answered through the HTTP/1.1
machinery (here: evenflow's own answers, no route, so nothing connects anywhere), gRPC-shaped
errors, malformed requests costing one stream, floods costing the connection, graceful GOAWAY.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from h2.config import H2Configuration
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame

from .harness import Pair, config, settle

MakePair = Callable[..., Pair]


def of(events: list[object], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


async def test_a_request_is_answered_through_the_http11_path(pair: MakePair) -> None:
    p = pair()
    sid = p.request("/nowhere", ("accept", "text/plain"))
    events = await p.events()
    (response,) = of(events, ResponseReceived)
    headers = dict(response.headers)
    assert headers[b":status"] == b"404"
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert b"connection" not in headers  # the canned answer's hop-by-hop field stays behind
    body = b"".join(e.data for e in of(events, DataReceived))
    assert body == b"404 Not Found\n"
    assert int(headers[b"content-length"]) == len(body)
    assert [e.stream_id for e in of(events, StreamEnded)] == [sid]
    assert not p.sock.closed
    assert p.conn.streams == {}  # the stream's DownstreamConnection was released


async def test_many_streams_on_one_connection(pair: MakePair) -> None:
    p = pair()
    sids = [p.request(f"/nowhere/{i}") for i in range(50)]
    events = await p.events()
    assert sorted(e.stream_id for e in of(events, StreamEnded)) == sids
    assert p.ctx.http2 is not None and p.ctx.http2.streams == 50


async def test_a_stream_over_max_concurrent_streams_is_refused_and_counted(
    pair: MakePair,
) -> None:
    p = pair(config(max_concurrent_streams=1))
    first = p.request("/nowhere", end=False)  # stays open: its request is not finished
    second = p.request("/nowhere")  # sent before the client read evenflow's SETTINGS
    events = await p.events()
    [refused] = of(events, StreamReset)
    assert (refused.stream_id, refused.error_code) == (second, ErrorCodes.REFUSED_STREAM)
    assert not of(events, ConnectionTerminated) and not p.sock.closed
    assert p.ctx.http2 is not None and p.ctx.http2.refused == 1
    p.client.end_stream(first)
    p.send()
    assert [e.stream_id for e in of(await p.events(), StreamEnded)] == [first]


async def test_grpc_error_is_a_trailers_only_response(pair: MakePair) -> None:
    p = pair()
    sid = p.request(
        "/pkg.Service/Method",
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        method="POST",
    )
    events = await p.events()
    (response,) = of(events, ResponseReceived)
    headers = dict(response.headers)
    assert headers[b":status"] == b"200"
    assert headers[b"content-type"] == b"application/grpc"
    assert headers[b"grpc-status"] == b"12"  # UNIMPLEMENTED: no route
    assert b"no route" in headers[b"grpc-message"]
    assert b"content-length" not in headers
    # one HEADERS frame that ends the stream: gRPC's Trailers-Only
    assert response.stream_ended is not None and response.stream_ended.stream_id == sid
    assert not of(events, DataReceived)


async def test_a_malformed_request_resets_its_stream_only(pair: MakePair) -> None:
    p = pair(
        client_config=H2Configuration(
            header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
        )
    )
    bad = p.request("/nowhere", ("connection", "close"))
    upper = p.request("/nowhere", ("X-Upper", "1"))
    injected = p.request("/nowhere", ("x-a", "1\r\nx-b: 2"))
    good = p.request("/nowhere")
    events = await p.events()
    resets = {e.stream_id: e.error_code for e in of(events, StreamReset)}
    assert resets == {sid: ErrorCodes.PROTOCOL_ERROR for sid in (bad, upper, injected)}
    assert [e.stream_id for e in of(events, ResponseReceived)] == [good]
    assert not of(events, ConnectionTerminated)
    assert p.ctx.http2 is not None and p.ctx.http2.malformed == 3


async def test_rapid_reset_closes_the_connection_with_enhance_your_calm(
    pair: MakePair, caplog: object
) -> None:
    p = pair(config(max_resets_per_s=10))
    with_log = caplog  # pytest's LogCaptureFixture
    for _ in range(11):
        sid = p.request("/nowhere", end=False)
        p.client.reset_stream(sid, ErrorCodes.CANCEL)
    with with_log.at_level(logging.WARNING, "evenflow.proxy.http2.downstream"):  # type: ignore[attr-defined]
        p.send()
    events = await p.events()
    (goaway,) = of(events, ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert p.sock.closed
    assert p.ctx.http2 is not None and p.ctx.http2.abuse == {"rapid_reset": 1}
    assert p.conn not in p.ctx.connections or p.conn.closed
    messages = [r.getMessage() for r in with_log.records]  # type: ignore[attr-defined]
    assert len(messages) == 1 and "rapid reset" in messages[0] and "192.0.2.7" in messages[0]


async def test_resets_below_the_limit_are_served(pair: MakePair) -> None:
    p = pair(config(max_resets_per_s=10))
    for _ in range(10):
        sid = p.request("/nowhere", end=False)
        p.client.reset_stream(sid, ErrorCodes.CANCEL)
    p.send()
    p.request("/nowhere")
    events = await p.events()
    assert len(of(events, ResponseReceived)) == 1
    assert not p.sock.closed


async def test_continuation_flood_closes_the_connection(pair: MakePair) -> None:
    p = pair(config(max_continuation_frames=4))
    await p.events()
    flood = HeadersFrame(1, data=b"\x82").serialize()  # no END_HEADERS: a block stays open
    flood += ContinuationFrame(1, data=b"").serialize() * 5
    p.send(flood)
    events = await p.events()
    assert of(events, ConnectionTerminated)[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert p.sock.closed
    assert p.ctx.http2 is not None and p.ctx.http2.abuse == {"continuation_flood": 1}


async def test_ping_flood_closes_the_connection(pair: MakePair) -> None:
    p = pair(config(max_control_frames_per_s=20))
    p.send(PingFrame(0, opaque_data=b"01234567").serialize() * 21)
    events = await p.events()
    assert of(events, ConnectionTerminated)[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert p.ctx.http2 is not None and p.ctx.http2.abuse == {"ping_flood": 1}


async def test_an_oversized_header_list_closes_the_connection(pair: MakePair) -> None:
    data = config()
    data["listeners"][0]["limits"] = {"max_header_bytes": 4096}
    p = pair(data)
    await p.events()  # the client learns the limit
    p.request("/nowhere", ("x-big", "v" * 5000))
    events = await p.events()
    assert of(events, ConnectionTerminated)[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert p.ctx.http2 is not None and p.ctx.http2.abuse == {"header_list_too_large": 1}


async def test_a_protocol_error_closes_with_goaway_and_is_counted(pair: MakePair) -> None:
    p = pair()
    p.send(b"\x00\x00\x04\x03\x00\x00\x00\x00\x00\x00\x00\x00\x08")  # RST_STREAM on stream 0
    events = await p.events()
    assert of(events, ConnectionTerminated)[0].error_code == ErrorCodes.PROTOCOL_ERROR
    assert p.sock.closed
    assert p.ctx.http2 is not None and p.ctx.http2.protocol_errors == 1


async def test_h2c_can_be_turned_off(pair: MakePair) -> None:
    p = pair(config(h2c=False))
    events = await p.events()
    assert of(events, ConnectionTerminated)[0].error_code == ErrorCodes.HTTP_1_1_REQUIRED
    assert p.sock.closed


async def test_the_connection_is_registered_with_its_listener(pair: MakePair) -> None:
    p = pair()
    assert p.conn in p.ctx.connections
    assert p.conn.transport is p.sock
    p.conn.connection_lost(None)
    assert p.conn not in p.ctx.connections


async def test_graceful_close_finishes_open_streams_and_refuses_new_ones(pair: MakePair) -> None:
    p = pair()
    open_sid = p.request("/nowhere", end=False)  # a GET whose end has not come yet
    await p.events()
    p.conn.close_when_idle()
    events = await p.events()
    (goaway,) = of(events, ConnectionTerminated)
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, open_sid)
    assert not p.sock.closed
    # the client would not open more; one that does is refused, the open stream completes
    p.client.state_machine.state = ConnectionState.CLIENT_OPEN  # h2 stops at any GOAWAY
    late = p.request("/nowhere")
    p.client.end_stream(open_sid)
    p.send()
    events = await p.events()
    assert {e.stream_id: e.error_code for e in of(events, StreamReset)} == {
        late: ErrorCodes.REFUSED_STREAM
    }
    assert [e.stream_id for e in of(events, ResponseReceived)] == [open_sid]
    assert p.sock.closed


async def test_graceful_close_of_an_idle_connection_is_immediate(pair: MakePair) -> None:
    p = pair()
    await settle()
    p.ctx.close_idle()
    events = await p.events()
    assert of(events, ConnectionTerminated)[0].error_code == ErrorCodes.NO_ERROR
    assert p.sock.closed


async def test_a_client_goaway_lets_open_streams_finish(pair: MakePair) -> None:
    p = pair()
    sid = p.request("/nowhere", end=False)
    p.client.close_connection()
    p.send()
    assert not p.sock.closed
    p.client.state_machine.state = ConnectionState.CLIENT_OPEN  # h2 stops at any GOAWAY
    p.client.end_stream(sid)
    p.send()
    events = await p.events()
    assert [e.stream_id for e in of(events, ResponseReceived)] == [sid]
    assert [e.stream_id for e in of(events, StreamEnded)] == [sid]
    assert p.sock.closed  # after the last stream's response
