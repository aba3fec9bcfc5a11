"""The server side of an HTTP/2 connection (RFC 9113), sans-IO: bytes in, events and bytes out.

It does for a client connection what h2's H2Connection did, with the part of its interface
evenflow used and the same events (h2.events' names and attributes, compiled: events.py) and
exceptions (h2.exceptions), so the connection and stream code above it did not change: frames
are parsed from a buffer with one struct call per header, streams are a few counters, and the
common frames (HEADERS, DATA, WINDOW_UPDATE) take one pass through a method. h2 spent more
than half of an HTTP/2 request's Python on its state machines and frame objects
(bench/instructions.py).

What it checks, as RFC 9113 says: the connection preface; frame sizes against the limits of
each type and SETTINGS_MAX_FRAME_SIZE; stream ids (odd, increasing); a header block is
HEADERS then CONTINUATION on the same stream with nothing between; flow control both ways;
settings values; frames on closed or idle streams. A connection error queues a GOAWAY and
raises ProtocolError (with its error code); a stream error resets the stream (RST_STREAM)
and reports it as StreamReset. Floods are FrameGuard's (guard.py), and request fields are
validated by downstream_fields; HPACK is field_decoder's and field_encoder's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final, NoReturn

from h2.errors import ErrorCodes
from h2.exceptions import (
    DenialOfServiceError,
    FlowControlError,
    FrameTooLargeError,
    ProtocolError,
    StreamClosedError,
)
from h2.settings import ChangedSetting, SettingCodes
from hpack import HPACKError, OversizedHeaderListError

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
from evenflow.proxy.http2.field_decoder import FieldDecoder
from evenflow.proxy.http2.field_encoder import StatelessEncoder

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (§6) and flags
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

_FRAME_HEADER: Final = struct.Struct(">HBBBL")  # length (24 bits as 16+8), type, flags, stream id
_UINT32: Final = struct.Struct(">L")
_SETTING: Final = struct.Struct(">HL")
_GOAWAY: Final = struct.Struct(">LL")
_STREAM_MASK: Final = 0x7FFFFFFF
_MAX_WINDOW: Final = 2**31 - 1
_DEFAULT_WINDOW: Final = 65535
_DEFAULT_FRAME_BYTES: Final = 16384
_MAX_FRAME_BYTES: Final = 2**24 - 1
_RESETS_REMEMBERED: Final = 1024  # streams reset by evenflow whose late frames are still ignored
_MIN_UPDATE_BYTES: Final = 1024  # the smallest connection WINDOW_UPDATE once the window is low


def frame(kind: int, flags: int, stream_id: int, payload: bytes | memoryview = b"") -> bytes:
    """One frame's bytes (§4.1)."""
    return frame_header(kind, flags, stream_id, len(payload)) + payload


def frame_header(kind: int, flags: int, stream_id: int, size: int) -> bytes:
    """The 9 bytes before a frame's payload of `size` bytes (§4.1)."""
    return _FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id)


class _Stream:
    """What the connection tracks of a stream: its windows and which sides have ended."""

    __slots__ = ("send_window", "recv_window", "processed", "remote_closed", "local_closed")

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.send_window = send_window  # bytes evenflow may send (the client's window)
        self.recv_window = recv_window  # bytes the client may still send
        self.processed = 0  # bytes the application read and not yet given back
        self.remote_closed = False  # the client sent END_STREAM
        self.local_closed = False  # evenflow sent END_STREAM


class H2Engine:
    """One client connection. `receive_data` returns events; `data_to_send` what to write."""

    def __init__(
        self,
        settings: dict[int, int],
        decoder: FieldDecoder | None = None,
        encoder: StatelessEncoder | None = None,
    ) -> None:
        # evenflow's settings, in effect from the start (a client cannot rely on less)
        self.local_settings = dict(settings)
        self.decoder = decoder or FieldDecoder()
        self.decoder.max_header_list_size = settings.get(
            SettingCodes.MAX_HEADER_LIST_SIZE, 64 * 1024
        )
        self.encoder = encoder or StatelessEncoder()
        self._max_streams = settings.get(SettingCodes.MAX_CONCURRENT_STREAMS, 100)
        self._stream_window = settings.get(SettingCodes.INITIAL_WINDOW_SIZE, _DEFAULT_WINDOW)
        self._max_frame_in = settings.get(SettingCodes.MAX_FRAME_SIZE, _DEFAULT_FRAME_BYTES)
        self.remote_settings: dict[int, int] = {}
        self.max_outbound_frame_size = _DEFAULT_FRAME_BYTES
        self._initial_send_window = _DEFAULT_WINDOW  # the client's SETTINGS_INITIAL_WINDOW_SIZE
        self._send_window = _DEFAULT_WINDOW  # connection window, evenflow -> client
        self._recv_window = _DEFAULT_WINDOW  # connection window, client -> evenflow
        self._recv_max = _DEFAULT_WINDOW
        self._processed = 0
        self.streams: dict[int, _Stream] = {}
        self.highest_inbound_stream_id = 0
        self._out: list[bytes | memoryview] = []  # frames, a DATA payload apart from its header
        self._in = b""
        self._preface_seen = False
        self.closed = False  # a GOAWAY went out for an error: nothing more is read
        self._reset_by_us: dict[int, None] = {}  # recent streams evenflow reset, oldest first
        self._goaway_last: int | None = None  # the last stream id of the GOAWAY we sent
        self.refused_streams = 0  # over SETTINGS_MAX_CONCURRENT_STREAMS: RST REFUSED_STREAM
        self._self_dependent = 0  # a HEADERS' stream that named itself as its dependency
        # a header block in progress: (stream id, END_STREAM, fragments), awaiting CONTINUATION
        self._block: tuple[int, bool, list[bytes]] | None = None

    # -- output ------------------------------------------------------------------------------

    def initiate_connection(self) -> None:
        """The server preface: evenflow's SETTINGS (§3.4)."""
        payload = b"".join(
            _SETTING.pack(code, value) for code, value in self.local_settings.items()
        )
        self._out.append(frame(SETTINGS, 0, 0, payload))

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        if len(out) == 1:
            only = out[0]
            return only if isinstance(only, bytes) else bytes(only)
        return b"".join(out)

    def send_headers(
        self, stream_id: int, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        stream = self._sending(stream_id)  # before encoding: a table size update is sent once
        self._send_block(stream_id, stream, self.encoder.encode(headers), end_stream)

    def send_encoded_headers(
        self, stream_id: int, pieces: list[bytes], end_stream: bool = False
    ) -> None:
        """HEADERS of fields encoded already, each by field_encoder.encode_field."""
        stream = self._sending(stream_id)
        self._send_block(stream_id, stream, self.encoder.join(pieces), end_stream)

    def _send_block(self, stream_id: int, stream: _Stream, block: bytes, end_stream: bool) -> None:
        limit = self.max_outbound_frame_size
        flags = END_STREAM if end_stream else 0
        if len(block) <= limit:
            self._out.append(frame(HEADERS, flags | END_HEADERS, stream_id, block))
        else:
            pieces = [block[at : at + limit] for at in range(0, len(block), limit)]
            self._out.append(frame(HEADERS, flags, stream_id, pieces[0]))
            for piece in pieces[1:-1]:
                self._out.append(frame(CONTINUATION, 0, stream_id, piece))
            self._out.append(frame(CONTINUATION, END_HEADERS, stream_id, pieces[-1]))
        if end_stream:
            self._end_local(stream_id, stream)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        stream = self._sending(stream_id)
        size = len(data)
        if size > self.max_outbound_frame_size:
            raise FrameTooLargeError(f"DATA of {size} bytes over the client's frame size")
        # §6.9.1: an empty DATA that ends the stream may go even with no window left (a
        # window a SETTINGS change made negative included)
        if size and (size > self._send_window or size > stream.send_window):
            raise FlowControlError(f"DATA of {size} bytes over the flow-control window")
        self._send_window -= size
        stream.send_window -= size
        # the header and the payload apart: data_to_send joins them, one copy instead of two
        out = self._out
        out.append(frame_header(DATA, END_STREAM if end_stream else 0, stream_id, size))
        if size:
            out.append(data)
        if end_stream:
            self._end_local(stream_id, stream)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self._out.append(frame(RST_STREAM, 0, stream_id, _UINT32.pack(error_code)))
            self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        """Remember a stream evenflow reset, for a while: the client may still send on it."""
        reset = self._reset_by_us
        reset[stream_id] = None
        if len(reset) > _RESETS_REMEMBERED:
            del reset[next(iter(reset))]

    def close_connection(self, error_code: int = 0, last_stream_id: int | None = None) -> None:
        last = self.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        if self._goaway_last is not None:
            last = min(last, self._goaway_last)  # §6.8: a later GOAWAY never raises it
        self._goaway_last = last
        self._out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(last, error_code)))

    def local_flow_control_window(self, stream_id: int) -> int:
        """What may be sent on `stream_id` now: the smaller of its window and the connection's."""
        stream = self._sending(stream_id)
        return min(self._send_window, stream.send_window)

    def acknowledge_received_data(self, size: int, stream_id: int) -> None:
        """The application read `size` flow-controlled bytes: give window back, in steps of at
        least half a window (as h2 did), so updates do not cost a frame per DATA."""
        self._processed += size
        self._give_back()
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return  # no more DATA comes on it: only the connection's window matters
        stream.processed += size
        window = self._stream_window
        if stream.processed >= window // 2 or (
            stream.recv_window == 0 and stream.processed > min(1024, window // 4)
        ):
            increment = min(stream.processed, window - stream.recv_window)
            stream.processed = 0
            if increment > 0:
                stream.recv_window += increment
                self._out.append(frame(WINDOW_UPDATE, 0, stream_id, _UINT32.pack(increment)))

    def _give_back(self) -> None:
        """Return what the application read to the connection's window: in steps of half a
        window, or as soon as a kilobyte is read once the window is under half open, so
        streams whose backends are slow (their DATA unread) do not stall the others."""
        processed = self._processed
        half = self._recv_max // 2
        if processed >= half or (self._recv_window < half and processed >= _MIN_UPDATE_BYTES):
            self._processed = 0
            self._recv_window += processed
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _UINT32.pack(processed)))

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """A larger connection window than the default (streams get INITIAL_WINDOW_SIZE)."""
        if stream_id:
            raise ValueError("stream windows come from SETTINGS_INITIAL_WINDOW_SIZE")
        self._recv_window += increment
        self._recv_max += increment
        self._out.append(frame(WINDOW_UPDATE, 0, 0, _UINT32.pack(increment)))

    def _sending(self, stream_id: int) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            raise StreamClosedError(stream_id)
        return stream

    def _end_local(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self.streams[stream_id]

    # -- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """The events in `data` (and what earlier calls left unfinished)."""
        if self.closed:
            return []
        buffer = self._in + data if self._in else data
        at = 0
        if not self._preface_seen:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(buffer):
                    self._connection_error(ErrorCodes.PROTOCOL_ERROR, "invalid connection preface")
                self._in = buffer
                return []
            if not buffer.startswith(PREFACE):
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "invalid connection preface")
            if len(buffer) < len(PREFACE) + 9:
                self._in = buffer
                return []
            if buffer[len(PREFACE) + 3] != SETTINGS:
                # §3.4: the preface is the magic string and then a SETTINGS frame
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "no SETTINGS after the preface")
            self._preface_seen = True
            at = len(PREFACE)
        events: list[Event] = []
        end = len(buffer)
        unpack = _FRAME_HEADER.unpack_from
        # declared: struct gives Any, and compiled arithmetic on Any goes through objects
        high: int
        low: int
        kind: int
        flags: int
        stream_id: int
        while end - at >= 9:
            high, low, kind, flags, stream_id = unpack(buffer, at)
            size = high << 8 | low
            if size > self._max_frame_in:
                self._connection_error(
                    ErrorCodes.FRAME_SIZE_ERROR,
                    f"a frame of {size} bytes over SETTINGS_MAX_FRAME_SIZE",
                )
            if end - at - 9 < size:
                break
            payload = buffer[at + 9 : at + 9 + size]
            at += 9 + size
            stream_id &= _STREAM_MASK
            if self._block is not None and kind != CONTINUATION:
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "a header block was interrupted")
            if kind == DATA:
                self._on_data(flags, stream_id, payload, events)
            elif kind == HEADERS:
                self._on_headers(flags, stream_id, payload, events)
            elif kind == WINDOW_UPDATE:
                self._on_window_update(stream_id, payload, events)
            elif kind == RST_STREAM:
                self._on_rst_stream(stream_id, payload, events)
            elif kind == SETTINGS:
                self._on_settings(flags, stream_id, payload, events)
            elif kind == PING:
                if len(payload) != 8:
                    self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "PING not 8 bytes")
                if stream_id:
                    self._connection_error(ErrorCodes.PROTOCOL_ERROR, "PING on a stream")
                if not flags & ACK:
                    self._out.append(frame(PING, ACK, 0, payload))
            elif kind == PRIORITY:
                if not stream_id:
                    self._connection_error(ErrorCodes.PROTOCOL_ERROR, "PRIORITY on stream 0")
                if len(payload) != 5:
                    if stream_id > self.highest_inbound_stream_id:
                        # §5.1: no RST_STREAM on an idle stream
                        self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY not 5 bytes")
                    self._stream_error(stream_id, ErrorCodes.FRAME_SIZE_ERROR, events)
                elif _UINT32.unpack_from(payload)[0] & _STREAM_MASK == stream_id:
                    self._stream_error(stream_id, ErrorCodes.PROTOCOL_ERROR, events)  # §5.3.1
            elif kind == CONTINUATION:
                self._on_continuation(flags, stream_id, payload, events)
            elif kind == GOAWAY:
                self._on_goaway(stream_id, payload, events)
            elif kind == PUSH_PROMISE:
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            # other types: extensions, ignored (§5.5)
        self._in = buffer[at:] if at < end else b""
        return events

    def _on_data(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if not stream_id:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)  # flow control counts the padding too (§6.1)
        if size > self._recv_window:
            self._connection_error(ErrorCodes.FLOW_CONTROL_ERROR, "DATA over the connection window")
        self._recv_window -= size
        if self._processed:
            self._give_back()  # read earlier, held back while the window was wide open
        data = _unpadded(payload) if flags & PADDED else payload
        if data is None:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, "padding longer than the frame")
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            if stream_id > self.highest_inbound_stream_id:
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "DATA on an idle stream")
            # a stream already closed (a reset crossing this DATA): the application gives
            # the connection window back, as for any DATA nobody reads
            events.append(DataReceived(stream_id=stream_id, data=b"", flow_controlled_length=size))
            if stream is not None or stream_id not in self._reset_by_us:
                # after the client's END_STREAM, or on a stream closed otherwise than by our
                # reset (whose late DATA is expected): §5.1, STREAM_CLOSED
                self._stream_error(stream_id, ErrorCodes.STREAM_CLOSED, events)
            return
        if size > stream.recv_window:
            self._connection_error(ErrorCodes.FLOW_CONTROL_ERROR, "DATA over the stream window")
        stream.recv_window -= size
        event = DataReceived(stream_id=stream_id, data=data, flow_controlled_length=size)
        events.append(event)
        if flags & END_STREAM:
            event.stream_ended = self._end_remote(stream_id, stream, events)

    def _on_headers(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if not stream_id or not stream_id & 1:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        fragment = payload
        if flags & PADDED:
            unpadded = _unpadded(payload)
            if unpadded is None:
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "padding longer than the frame")
            fragment = unpadded
        if flags & PRIORITY_FLAG:
            if len(fragment) < 5:
                self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "HEADERS too short")
            if _UINT32.unpack_from(fragment)[0] & _STREAM_MASK == stream_id:
                self._self_dependent = stream_id  # reset once its block is decoded (§5.3.1)
            fragment = fragment[5:]
        if flags & END_HEADERS:
            self._on_block(stream_id, bool(flags & END_STREAM), fragment, events)
        else:
            self._block = (stream_id, bool(flags & END_STREAM), [fragment])

    def _on_continuation(
        self, flags: int, stream_id: int, payload: bytes, events: list[Event]
    ) -> None:
        block = self._block
        if block is None or block[0] != stream_id:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, "CONTINUATION out of place")
        block[2].append(payload)
        if flags & END_HEADERS:
            self._block = None
            self._on_block(stream_id, block[1], b"".join(block[2]), events)

    def _on_block(self, stream_id: int, ended: bool, block: bytes, events: list[Event]) -> None:
        """A complete header block: a request, or a request's trailers."""
        try:
            headers = self.decoder.decode(block)
        except OversizedHeaderListError as exc:
            raise DenialOfServiceError(f"header list too large: {exc}") from None
        except HPACKError as exc:
            self._connection_error(ErrorCodes.COMPRESSION_ERROR, f"header block: {exc}")
        stream = self.streams.get(stream_id)
        if stream_id > self.highest_inbound_stream_id:
            self.highest_inbound_stream_id = stream_id
            if self._self_dependent == stream_id:
                # §5.3.1: a stream that depends on itself is a stream error
                self._self_dependent = 0
                self._stream_error(stream_id, ErrorCodes.PROTOCOL_ERROR, events)
                return
            if len(self.streams) >= self._max_streams:
                # §5.1.2: a stream error (a client may open streams before it reads our
                # SETTINGS); floods of them are FrameGuard's business
                self._out.append(
                    frame(RST_STREAM, 0, stream_id, _UINT32.pack(ErrorCodes.REFUSED_STREAM))
                )
                self._forget(stream_id)
                self.refused_streams += 1
                return
            stream = self.streams[stream_id] = _Stream(
                self._initial_send_window, self._stream_window
            )
            event: RequestReceived | TrailersReceived = RequestReceived(
                stream_id=stream_id, headers=headers
            )
        elif stream is None:
            if stream_id in self._reset_by_us:
                # §5.1: frames the client sent before our RST_STREAM reached it are ignored
                # (the block was decoded: HPACK stays in step)
                return
            # a stream closed (or skipped, §5.1.1) cannot be opened again
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, f"HEADERS on closed {stream_id}")
        elif stream.remote_closed:
            self._stream_error(stream_id, ErrorCodes.STREAM_CLOSED, events)  # after END_STREAM
            return
        else:
            if not ended:
                # §8.1: a second HEADERS must end the stream; else the request is malformed
                self._stream_error(stream_id, ErrorCodes.PROTOCOL_ERROR, events)
                return
            event = TrailersReceived(stream_id=stream_id, headers=headers)
        events.append(event)
        if ended:
            event.stream_ended = self._end_remote(stream_id, stream, events)

    def _on_window_update(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 bytes")
        increment = _UINT32.unpack(payload)[0] & _STREAM_MASK
        if not stream_id:
            if not increment:
                self._connection_error(ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                self._connection_error(ErrorCodes.FLOW_CONTROL_ERROR, "window over 2^31-1")
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                if stream_id > self.highest_inbound_stream_id:
                    self._connection_error(
                        ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE on idle stream"
                    )
                return  # a closed stream: may cross its end (§6.9)
            if not increment:
                self._stream_error(stream_id, ErrorCodes.PROTOCOL_ERROR, events)
                return
            stream.send_window += increment
            if stream.send_window > _MAX_WINDOW:
                self._stream_error(stream_id, ErrorCodes.FLOW_CONTROL_ERROR, events)
                return
        events.append(WindowUpdated(stream_id=stream_id, delta=increment))

    def _on_rst_stream(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes")
        if not stream_id or stream_id > self.highest_inbound_stream_id:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        if self.streams.pop(stream_id, None) is None:
            return
        code = _error_code(_UINT32.unpack(payload)[0])
        events.append(StreamReset(stream_id=stream_id, error_code=code, remote_reset=True))

    def _on_settings(self, flags: int, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6")
        changed: dict[int, ChangedSetting] = {}
        for at in range(0, len(payload), 6):
            code, value = _SETTING.unpack_from(payload, at)
            original = self.remote_settings.get(code)
            if code == SettingCodes.INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    self._connection_error(ErrorCodes.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE")
                delta = value - self._initial_send_window
                self._initial_send_window = value
                for stream in self.streams.values():  # §6.9.2: open streams' windows move
                    stream.send_window += delta
                    if stream.send_window > _MAX_WINDOW:
                        self._connection_error(ErrorCodes.FLOW_CONTROL_ERROR, "window over 2^31-1")
            elif code == SettingCodes.MAX_FRAME_SIZE:
                if not _DEFAULT_FRAME_BYTES <= value <= _MAX_FRAME_BYTES:
                    self._connection_error(ErrorCodes.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.max_outbound_frame_size = value
            elif code == SettingCodes.ENABLE_PUSH:
                if value > 1:
                    self._connection_error(ErrorCodes.PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1")
            elif code == SettingCodes.HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
            self.remote_settings[code] = value
            changed[code] = ChangedSetting(code, original, value)
        self._out.append(frame(SETTINGS, ACK, 0))
        events.append(RemoteSettingsChanged(changed))

    def _on_goaway(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        if stream_id:
            self._connection_error(ErrorCodes.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            self._connection_error(ErrorCodes.FRAME_SIZE_ERROR, "GOAWAY under 8 bytes")
        last, code = _GOAWAY.unpack_from(payload)
        events.append(ConnectionTerminated(_error_code(code), last & _STREAM_MASK, payload[8:]))

    def _end_remote(self, stream_id: int, stream: _Stream, events: list[Event]) -> StreamEnded:
        stream.remote_closed = True
        if stream.local_closed:
            del self.streams[stream_id]
        ended = StreamEnded(stream_id=stream_id)
        events.append(ended)
        return ended

    def _stream_error(self, stream_id: int, code: int, events: list[Event]) -> None:
        """§5.4.2: reset the stream, and tell the application it is gone."""
        self._out.append(frame(RST_STREAM, 0, stream_id, _UINT32.pack(code)))
        self._forget(stream_id)
        if self.streams.pop(stream_id, None) is not None:
            reset = StreamReset(
                stream_id=stream_id, error_code=_error_code(code), remote_reset=False
            )
            events.append(reset)

    def _connection_error(self, code: int, message: str) -> NoReturn:
        """§5.4.1: GOAWAY with `code`, then nothing more is read; raises ProtocolError."""
        self.closed = True
        self.close_connection(code)
        error = ProtocolError(message)
        error.error_code = ErrorCodes(code)
        raise error


def _unpadded(payload: bytes) -> bytes | None:
    """A padded frame's content (§6.1, §6.2) without its pad length and padding; None when
    the padding is longer than the frame (a connection error)."""
    if not payload or payload[0] >= len(payload):
        return None
    return payload[1 : len(payload) - payload[0]]


def _error_code(code: int) -> ErrorCodes | int:
    try:
        return ErrorCodes(code)
    except ValueError:
        return code
