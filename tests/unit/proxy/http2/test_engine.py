"""The server side of HTTP/2 (engine.py), judged by h2's client: nobody here wrote either the
client or the frames it sends. Error cases are built frame by frame with hyperframe."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from h2.exceptions import (
    DenialOfServiceError,
    FlowControlError,
    ProtocolError,
    StreamClosedError,
)
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from evenflow.proxy.http2.engine import PREFACE, H2Engine
from evenflow.proxy.http2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)

S = h2.settings.SettingCodes
SETTINGS = {
    S.MAX_CONCURRENT_STREAMS: 4,
    S.MAX_HEADER_LIST_SIZE: 8192,
    S.INITIAL_WINDOW_SIZE: 65535,
    S.ENABLE_CONNECT_PROTOCOL: 1,
}
REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a"), (b":authority", b"x")]


class Pair:
    """An engine and h2's client, connected: `pump` carries bytes both ways once."""

    def __init__(self, **settings: int) -> None:
        self.server = H2Engine({**SETTINGS, **settings})
        self.server.initiate_connection()
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.server_events: list[Any] = []
        self.client_events: list[Any] = []
        self.pump()

    def pump(self) -> None:
        for _ in range(4):
            to_server = self.client.data_to_send()
            if to_server:
                self.server_events += self.server.receive_data(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                self.client_events += self.client.receive_data(to_client)
            if not to_server and not to_client:
                return

    def take(self, kind: type) -> list[Any]:
        found = [e for e in self.server_events if isinstance(e, kind)]
        self.server_events = [e for e in self.server_events if not isinstance(e, kind)]
        return found

    def client_took(self, kind: type) -> list[Any]:
        found = [e for e in self.client_events if isinstance(e, kind)]
        self.client_events = [e for e in self.client_events if not isinstance(e, kind)]
        return found


def raw_server(**settings: int) -> H2Engine:
    """An engine past the preface and the client's (empty) SETTINGS."""
    server = H2Engine({**SETTINGS, **settings})
    server.initiate_connection()
    server.receive_data(PREFACE + SettingsFrame(0).serialize())
    server.data_to_send()
    return server


def block(headers: list[tuple[bytes, bytes]] = REQUEST) -> bytes:
    return Encoder().encode(headers)


def goaway_code(server: H2Engine) -> int:
    """The error code of the GOAWAY the engine queued, read by h2's client."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    events = client.receive_data(server.data_to_send())
    [terminated] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    return int(terminated.error_code)


# --- requests and responses -------------------------------------------------------------------


def test_a_request_and_its_response() -> None:
    pair = Pair()
    assert pair.client_took(h2.events.RemoteSettingsChanged)  # evenflow's SETTINGS arrived
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    [request] = pair.take(RequestReceived)
    assert request.stream_id == 1 and request.headers == REQUEST
    assert request.stream_ended is not None and pair.take(StreamEnded)
    pair.server.send_headers(1, [(b":status", b"200"), (b"content-type", b"text/plain")])
    pair.server.send_data(1, b"hello", end_stream=True)
    pair.pump()
    [response] = pair.client_took(h2.events.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert [e.data for e in pair.client_took(h2.events.DataReceived)] == [b"hello"]
    assert pair.client_took(h2.events.StreamEnded)
    assert 1 not in pair.server.streams  # both sides ended: forgotten


def test_a_request_body_flows_as_the_application_reads_it() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST[:1] + [(b":method", b"POST")][:0] + REQUEST[1:])
    body = bytes(range(256)) * 1024  # 256 KiB: four times the stream window
    sent = received = 0
    while received < len(body):
        window = pair.client.local_flow_control_window(1)
        chunk = body[sent : sent + min(window, 16384)]
        if chunk:
            pair.client.send_data(1, chunk, end_stream=sent + len(chunk) == len(body))
            sent += len(chunk)
        pair.pump()
        for event in pair.take(DataReceived):
            received += len(event.data)
            pair.server.acknowledge_received_data(event.flow_controlled_length, 1)
        pair.pump()
        assert chunk or received < len(body) or True
    assert received == len(body) and pair.take(StreamEnded)


def test_a_response_waits_for_the_clients_window() -> None:
    pair = Pair()
    pair.client.update_settings({S.INITIAL_WINDOW_SIZE: 10})
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    assert pair.server.local_flow_control_window(1) == 10
    pair.server.send_headers(1, [(b":status", b"200")])
    with pytest.raises(FlowControlError):
        pair.server.send_data(1, b"x" * 11)
    pair.server.send_data(1, b"x" * 10)
    assert pair.server.local_flow_control_window(1) == 0
    pair.pump()
    pair.client.acknowledge_received_data(10, 1)  # h2 answers with WINDOW_UPDATE(s)
    pair.client.increment_flow_control_window(100, stream_id=1)
    pair.pump()
    assert pair.take(WindowUpdated)
    assert pair.server.local_flow_control_window(1) >= 100


def test_a_large_response_head_is_split_into_continuation_frames() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST, end_stream=True)
    pair.pump()
    big = [(b":status", b"200")] + [(b"x-%d" % i, b"v" * 1000) for i in range(40)]
    pair.server.send_headers(1, big, end_stream=True)
    pair.pump()
    [response] = pair.client_took(h2.events.ResponseReceived)
    assert response.headers == big


def test_trailers_and_a_split_request_head_fed_byte_by_byte() -> None:
    server = raw_server()
    encoded = block()
    frames = (
        HeadersFrame(1, encoded[:5]).serialize()
        + ContinuationFrame(1, encoded[5:], flags=["END_HEADERS"]).serialize()
        + DataFrame(1, b"body").serialize()
        + HeadersFrame(
            1, block([(b"x-trailer", b"1")]), flags=["END_HEADERS", "END_STREAM"]
        ).serialize()
    )
    events = []
    for at in range(len(frames)):
        events += server.receive_data(frames[at : at + 1])
    kinds = [type(e) for e in events]
    assert kinds == [RequestReceived, DataReceived, TrailersReceived, StreamEnded]
    assert events[0].headers == REQUEST and events[1].data == b"body"
    assert events[2].headers == [(b"x-trailer", b"1")]


def test_padding_is_removed_and_counted() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS"]).serialize())
    padded = DataFrame(1, b"abc", flags=["PADDED"], pad_length=4).serialize()
    [event] = server.receive_data(padded)
    assert event.data == b"abc" and event.flow_controlled_length == 3 + 1 + 4


def test_settings_are_acknowledged_and_windows_follow_them() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQUEST)
    pair.pump()
    before = pair.server.local_flow_control_window(1)
    pair.client.update_settings({S.INITIAL_WINDOW_SIZE: 1000, S.MAX_FRAME_SIZE: 32768})
    pair.pump()
    changed = pair.take(RemoteSettingsChanged)[-1]
    assert S.INITIAL_WINDOW_SIZE in changed.changed_settings
    assert pair.client_took(h2.events.SettingsAcknowledged)
    assert pair.server.max_outbound_frame_size == 32768
    assert pair.server.local_flow_control_window(1) == min(before, 1000)


def test_ping_is_answered() -> None:
    pair = Pair()
    pair.client.ping(b"12345678")
    pair.pump()
    [ack] = pair.client_took(h2.events.PingAckReceived)
    assert ack.ping_data == b"12345678"


def test_a_client_reset_ends_the_stream_and_later_data_gives_its_window_back() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS"]).serialize())
    [reset] = server.receive_data(RstStreamFrame(1, error_code=8).serialize())
    assert isinstance(reset, StreamReset) and reset.error_code == ErrorCodes.CANCEL
    with pytest.raises(StreamClosedError):
        server.send_headers(1, [(b":status", b"200")])
    [late] = server.receive_data(DataFrame(1, b"xyz").serialize())  # crossed the reset
    assert isinstance(late, DataReceived) and late.flow_controlled_length == 3


def test_data_after_the_clients_end_of_stream_resets_the_stream() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS", "END_STREAM"]).serialize())
    events = server.receive_data(DataFrame(1, b"late").serialize())
    assert [type(e) for e in events] == [DataReceived, StreamReset]
    assert events[1].error_code == ErrorCodes.STREAM_CLOSED
    assert b"\x03" in server.data_to_send()[:4]  # an RST_STREAM frame went out


def test_headers_on_a_stream_evenflow_reset_are_ignored_but_decoded() -> None:
    server = raw_server()
    encoder = Encoder()  # one encoder: the ignored block still fills the engine's table
    server.receive_data(HeadersFrame(1, encoder.encode(REQUEST), flags=["END_HEADERS"]).serialize())
    server.reset_stream(1, ErrorCodes.REFUSED_STREAM)
    trailers = encoder.encode([(b"x-trailer", b"indexed")])
    assert (
        server.receive_data(
            HeadersFrame(1, trailers, flags=["END_HEADERS", "END_STREAM"]).serialize()
        )
        == []
    )
    again = encoder.encode([*REQUEST, (b"x-trailer", b"indexed")])  # now table references
    [request] = server.receive_data(
        HeadersFrame(3, again, flags=["END_HEADERS", "END_STREAM"]).serialize()
    )[:1]
    assert request.headers == [*REQUEST, (b"x-trailer", b"indexed")]


def test_a_goaway_from_the_client_is_an_event() -> None:
    pair = Pair()
    pair.client.close_connection(error_code=0)
    pair.pump()
    [terminated] = pair.take(ConnectionTerminated)
    assert terminated.error_code == ErrorCodes.NO_ERROR


def test_a_stream_over_the_limit_is_refused_and_the_connection_goes_on() -> None:
    server = raw_server()
    for stream_id in (1, 3, 5, 7):
        server.receive_data(HeadersFrame(stream_id, block(), flags=["END_HEADERS"]).serialize())
    server.data_to_send()
    # §5.1.2: a stream error; a client may open streams before it reads our SETTINGS
    assert server.receive_data(HeadersFrame(9, block(), flags=["END_HEADERS"]).serialize()) == []
    assert server.data_to_send() == RstStreamFrame(9, error_code=7).serialize()  # REFUSED
    assert server.refused_streams == 1
    server.reset_stream(1, ErrorCodes.CANCEL)  # one ends: the next fits
    [request] = server.receive_data(HeadersFrame(11, block(), flags=["END_HEADERS"]).serialize())
    assert isinstance(request, RequestReceived) and request.stream_id == 11


def test_an_empty_data_ends_a_stream_whose_window_went_negative() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS", "END_STREAM"]).serialize())
    server.send_headers(1, [(b":status", b"200")])
    server.send_data(1, b"hello")
    server.receive_data(SettingsFrame(0, settings={S.INITIAL_WINDOW_SIZE: 0}).serialize())
    assert server.local_flow_control_window(1) == -5  # §6.9.2: a window may go negative
    with pytest.raises(FlowControlError):
        server.send_data(1, b"x")
    server.data_to_send()
    server.send_data(1, b"", end_stream=True)  # §6.9.1: allowed without window
    assert server.data_to_send() == DataFrame(1, b"", flags=["END_STREAM"]).serialize()
    assert 1 not in server.streams


def test_streams_whose_data_waits_unread_do_not_stall_the_others() -> None:
    # the connection window is 4 stream windows; three streams fill theirs while their
    # backends are slow (nothing acknowledged): what a fourth one had read must come back
    server = raw_server()
    server.increment_flow_control_window(3 * 65535)
    server.data_to_send()
    for stream_id in (1, 3, 5, 7):
        server.receive_data(HeadersFrame(stream_id, block(), flags=["END_HEADERS"]).serialize())
    for at in range(0, 65535, 16383):
        [event] = server.receive_data(DataFrame(1, b"x" * min(16383, 65535 - at)).serialize())
        server.acknowledge_received_data(event.flow_controlled_length, 1)
    server.data_to_send()
    for stream_id in (3, 5, 7):
        for at in range(0, 65535, 16383):
            server.receive_data(DataFrame(stream_id, b"x" * min(16383, 65535 - at)).serialize())
    updates = server.data_to_send()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    given = sum(
        e.delta
        for e in client.receive_data(updates)
        if isinstance(e, h2.events.WindowUpdated) and not e.stream_id
    )
    assert given == 65535  # stream 1's bytes, back on the connection window


def test_a_later_goaway_never_raises_the_last_stream_id() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS"]).serialize())
    server.close_connection(0, last_stream_id=1)  # a graceful shutdown
    server.receive_data(HeadersFrame(3, block(), flags=["END_HEADERS"]).serialize())
    server.close_connection(ErrorCodes.PROTOCOL_ERROR)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    data = server.data_to_send()
    lasts = [
        int.from_bytes(data[at + 9 : at + 13], "big")
        for at in range(len(data) - 8)
        if data[at + 3] == 0x7 and data[at : at + 3] == b"\x00\x00\x08"
    ]
    assert lasts == [1, 1]


def test_an_hpack_bomb_is_a_denial_of_service() -> None:
    server = raw_server()
    encoder = Encoder()  # one encoder: its table is the engine's
    first = encoder.encode([*REQUEST, (b"x-bomb", b"b" * 1000)])
    again = encoder.encode([*REQUEST, *[(b"x-bomb", b"b" * 1000)] * 10])  # 1-byte references
    assert len(again) < 20  # 20 bytes that decode to over 10 KB, the limit being 8 KiB
    server.receive_data(HeadersFrame(1, first, flags=["END_HEADERS"]).serialize())
    with pytest.raises(DenialOfServiceError):
        server.receive_data(HeadersFrame(3, again, flags=["END_HEADERS"]).serialize())


# --- connection errors: a GOAWAY with the code RFC 9113 names, then ProtocolError ----------


def _window_update_zero() -> bytes:
    frame = WindowUpdateFrame(0, window_increment=1).serialize()
    return frame[:9] + b"\x00\x00\x00\x00"


CONNECTION_ERRORS = {
    "a header block interrupted": (
        HeadersFrame(1, block()[:3]).serialize() + PingFrame(0, b"8 bytes!").serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "CONTINUATION without HEADERS": (
        ContinuationFrame(1, block(), flags=["END_HEADERS"]).serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "an even stream id": (
        HeadersFrame(2, block(), flags=["END_HEADERS"]).serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "a frame over SETTINGS_MAX_FRAME_SIZE": (
        DataFrame(1, b"x" * 16385).serialize(),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "DATA on an idle stream": (DataFrame(1, b"x").serialize(), ErrorCodes.PROTOCOL_ERROR),
    "padding longer than the frame": (
        HeadersFrame(1, block(), flags=["END_HEADERS"]).serialize()
        + bytes.fromhex("0000020008000000010500"),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "an invalid header block": (
        HeadersFrame(1, b"\x80", flags=["END_HEADERS"]).serialize(),
        ErrorCodes.COMPRESSION_ERROR,
    ),
    "a connection WINDOW_UPDATE of 0": (_window_update_zero(), ErrorCodes.PROTOCOL_ERROR),
    "a window over 2^31-1": (
        WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "SETTINGS_MAX_FRAME_SIZE too small": (
        SettingsFrame(0, settings={S.MAX_FRAME_SIZE: 100}).serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "SETTINGS of 5 bytes": (bytes.fromhex("000005040000000000") + b"\0" * 5, 6),
    "DATA over the connection window": (
        HeadersFrame(1, block(), flags=["END_HEADERS"]).serialize()
        + b"".join(DataFrame(1, b"x" * 16384).serialize() for _ in range(5)),
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "HEADERS opening a stream below the highest": (
        HeadersFrame(5, block(), flags=["END_HEADERS"]).serialize()
        + HeadersFrame(3, block(), flags=["END_HEADERS"]).serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "PRIORITY of 4 bytes on an idle stream": (
        bytes.fromhex("000004020000000009") + b"\0" * 4,
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "RST_STREAM on an idle stream": (
        RstStreamFrame(7, error_code=0).serialize(),
        ErrorCodes.PROTOCOL_ERROR,
    ),
}


@pytest.mark.parametrize("case", list(CONNECTION_ERRORS))
def test_connection_errors(case: str) -> None:
    frames, code = CONNECTION_ERRORS[case]
    server = raw_server()
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(frames)
    assert caught.value.error_code == code
    assert goaway_code(server) == code
    assert server.receive_data(DataFrame(1, b"x").serialize()) == []  # nothing more is read


def test_trailers_without_end_stream_reset_the_stream_only() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS"]).serialize())
    [reset] = server.receive_data(
        HeadersFrame(1, block([(b"x-t", b"1")]), flags=["END_HEADERS"]).serialize()
    )
    assert isinstance(reset, StreamReset) and reset.error_code == ErrorCodes.PROTOCOL_ERROR
    [request] = server.receive_data(HeadersFrame(3, block(), flags=["END_HEADERS"]).serialize())
    assert isinstance(request, RequestReceived)


def test_data_on_a_stream_both_sides_ended_is_stream_closed() -> None:
    server = raw_server()
    server.receive_data(HeadersFrame(1, block(), flags=["END_HEADERS", "END_STREAM"]).serialize())
    server.send_headers(1, [(b":status", b"204")], end_stream=True)
    server.data_to_send()
    [credit] = server.receive_data(DataFrame(1, b"x").serialize())
    assert credit.flow_controlled_length == 1  # the connection window is still given back
    assert server.data_to_send() == RstStreamFrame(1, error_code=5).serialize()  # STREAM_CLOSED


def test_a_stream_that_depends_on_itself_is_reset() -> None:
    server = raw_server()
    headers = HeadersFrame(1, block(), flags=["END_HEADERS", "PRIORITY"], depends_on=1)
    assert server.receive_data(headers.serialize()) == []  # never a request
    assert server.data_to_send() == RstStreamFrame(1, error_code=1).serialize()
    priority = bytes.fromhex("0000050200000000030000000310")  # 3 on itself
    assert server.receive_data(priority) == []
    assert server.data_to_send().endswith(RstStreamFrame(3, error_code=1).serialize())
    # the first block was decoded all the same: the table is in step for the next
    [request] = server.receive_data(HeadersFrame(5, block(), flags=["END_HEADERS"]).serialize())
    assert request.headers == REQUEST


def test_the_preface_must_be_followed_by_settings() -> None:
    server = H2Engine(SETTINGS)
    with pytest.raises(ProtocolError):
        server.receive_data(PREFACE + PingFrame(0, b"12345678").serialize())


def test_an_invalid_preface() -> None:
    server = H2Engine(SETTINGS)
    with pytest.raises(ProtocolError):
        server.receive_data(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 10)
