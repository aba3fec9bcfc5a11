"""What H2Engine reports of a client's frames: h2's events (h2.events), with the attributes
evenflow reads, as compiled classes.

h2's are plain Python classes: making one ran interpreted code, twice per request (a request
and its end), and each attribute read was a dictionary lookup. These have the same names and
attributes, so code written against h2's reads the same.
"""

from __future__ import annotations

from h2.settings import ChangedSetting


class Event:
    """Base class of the engine's events."""

    __slots__ = ()


class RequestReceived(Event):
    """A request's header block (decoded, not validated: see downstream_fields)."""

    __slots__ = ("stream_id", "headers", "stream_ended")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended: StreamEnded | None = None  # the HEADERS ended the stream too


class TrailersReceived(Event):
    """A request's trailers (a second header block, which ends the stream)."""

    __slots__ = ("stream_id", "headers", "stream_ended")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended: StreamEnded | None = None


class DataReceived(Event):
    """DATA: `flow_controlled_length` counts the padding too, for the window."""

    __slots__ = ("stream_id", "data", "flow_controlled_length", "stream_ended")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length
        self.stream_ended: StreamEnded | None = None


class StreamEnded(Event):
    """The client ended its side of the stream (END_STREAM)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(Event):
    """The stream is gone: reset by the client (`remote_reset`), or by the engine."""

    __slots__ = ("stream_id", "error_code", "remote_reset")

    def __init__(self, stream_id: int, error_code: int, remote_reset: bool) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote_reset = remote_reset


class WindowUpdated(Event):
    """WINDOW_UPDATE: stream 0 is the connection's window."""

    __slots__ = ("stream_id", "delta")

    def __init__(self, stream_id: int, delta: int) -> None:
        self.stream_id = stream_id
        self.delta = delta


class RemoteSettingsChanged(Event):
    """The client's SETTINGS, each setting as h2's ChangedSetting."""

    __slots__ = ("changed_settings",)

    def __init__(self, changed_settings: dict[int, ChangedSetting]) -> None:
        self.changed_settings = changed_settings


class ConnectionTerminated(Event):
    """The client's GOAWAY."""

    __slots__ = ("error_code", "last_stream_id", "additional_data")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data
