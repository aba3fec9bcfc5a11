"""HTTP/2 to backends: virtual HTTP/1.1 connections multiplexed over one HTTP/2 connection.

HTTP/1.1 is evenflow's internal lingua franca. The exchange opens an ordinary upstream
connection through `open_h2`, which hands it a `StreamTransport`: a transport that carries one
exchange at a time, like a keep-alive TCP connection, but whose every request becomes a
stream of the backend's shared `Session`. Request bytes written to it are parsed and sent as
HEADERS, DATA and trailers; the stream's response is turned back into HTTP/1.1 bytes for the
connection's parser. Flow control is the backpressure: a paused reader stops acknowledging
its stream's DATA, a full stream window pauses the writer.

It knows nothing of routing or pools: a backend address, an optional TLS context, streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Callable
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from evenflow.core.backend import BackendState
from evenflow.proxy.http2.field_encoder import StatelessEncoder
from evenflow.proxy.http2.upstream_stream import STREAM_WINDOW, StreamTransport, error_name

log = logging.getLogger(__name__)

# The connection's receive window: large enough that paused streams never starve the others
# (its bytes are acknowledged as soon as they are relayed; each stream's own window bounds it).
CONNECTION_WINDOW = 16 * 1024 * 1024
# Virtual connections per HTTP/2 connection before the backend's SETTINGS say how many streams
# it allows (RFC 9113 §6.5.2 advises at least 100), and the most ever, whatever it allows.
DEFAULT_STREAMS = 100
MAX_STREAMS = 1000
# Response header list evenflow accepts from a backend (HPACK decoded), as an HTTP/1.1 head.
MAX_HEADER_LIST_BYTES = 64 * 1024
# Past this stream id the connection stops taking new streams (ids are 31 bits, RFC 9113 §5.1.1).
LAST_STREAM_ID = 2**31 - 1 - 2 * MAX_STREAMS


class Session(asyncio.Protocol):
    """One HTTP/2 connection to a backend and the virtual connections multiplexed on it."""

    __slots__ = (
        "loop",
        "key",
        "name",
        "scheme",
        "authority",
        "h2",
        "transport",
        "ready",
        "streams",
        "virtuals",
        "going_away",
        "closed",
        "writing_paused",
        "_settled",
        "_conn_unacked",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, key: _Key, name: str, tls: bool, authority: bytes
    ) -> None:
        self.loop = loop
        self.key = key
        self.name = name  # the backend's address, for messages
        self.scheme = b"https" if tls else b"http"
        self.authority = authority  # when a request has no Host
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.encoder = StatelessEncoder()
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_BYTES,
            },
        )
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.streams: dict[int, StreamTransport] = {}
        self.virtuals: set[StreamTransport] = set()
        self.going_away = False  # GOAWAY sent or received: no new virtual connections
        self.closed = False
        self.writing_paused = False
        self._settled = False  # the backend's SETTINGS arrived
        self._conn_unacked = 0

    def has_room(self) -> bool:
        if self.going_away or self.closed:
            return False
        limit = DEFAULT_STREAMS
        if self._settled:
            limit = min(self.h2.remote_settings.max_concurrent_streams, MAX_STREAMS)
        return len(self.virtuals) < limit

    def open_virtual(self) -> StreamTransport:
        virtual = StreamTransport(self)
        self.virtuals.add(virtual)
        return virtual

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = real = cast(asyncio.Transport, transport)
        ssl_object = real.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            self.ready.set_exception(
                ConnectionError(f"{self.name} did not agree to HTTP/2 (ALPN h2) over TLS")
            )
            real.abort()
            return
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()
        self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True
        for virtual in list(self.streams.values()):
            virtual.update_write_pause()

    def resume_writing(self) -> None:
        self.writing_paused = False
        for virtual in list(self.streams.values()):
            virtual.update_write_pause()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.info("HTTP/2 connection to %s closed: protocol error: %s", self.name, exc)
            self.flush()  # h2 has queued a GOAWAY
            if self.transport is not None:
                self.transport.abort()
            self._lost(ConnectionError(f"HTTP/2 protocol error from {self.name}: {exc}"))
            return
        streams = self.streams
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self._conn_unacked += event.flow_controlled_length
                virtual = streams.get(event.stream_id)
                if virtual is not None:
                    virtual.on_data(
                        event.data, event.flow_controlled_length, event.stream_ended is not None
                    )
            elif isinstance(event, h2.events.ResponseReceived):
                virtual = streams.get(event.stream_id)
                if virtual is not None:
                    virtual.on_response(event.headers, event.stream_ended is not None)
            elif isinstance(event, h2.events.TrailersReceived):
                virtual = streams.get(event.stream_id)
                if virtual is not None:
                    virtual.on_trailers(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                virtual = streams.get(event.stream_id)
                if virtual is not None:  # an END_STREAM in an empty DATA frame
                    virtual.on_data(b"", 0, True)
            elif isinstance(event, h2.events.InformationalResponseReceived):
                virtual = streams.get(event.stream_id)
                if virtual is not None:
                    virtual.on_response(event.headers, False)
            elif isinstance(event, h2.events.StreamReset):
                virtual = streams.get(event.stream_id)
                if virtual is not None:
                    virtual.on_reset(event.error_code)
            elif isinstance(event, h2.events.WindowUpdated):
                self._on_window(event.stream_id)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self._settled = True
                self._on_window(0)  # a new initial window may open every stream
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(event.last_stream_id or 0, event.error_code or 0)
        if self._conn_unacked >= CONNECTION_WINDOW // 4 and not self.closed:
            self.h2.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        self.flush()

    # -- driven by the virtual connections ---------------------------------------------------

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def reset(self, stream_id: int, code: int) -> None:
        # already closed on both sides: nothing to reset
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.h2.reset_stream(stream_id, code)

    def on_stream_opened(self, stream_id: int, virtual: StreamTransport) -> None:
        self.streams[stream_id] = virtual
        if stream_id >= LAST_STREAM_ID:
            self.retire()  # ids run out: later requests go to a new connection

    def on_stream_done(self) -> None:
        if self.going_away and not self.streams:
            self._shut()

    def close_if_unused(self) -> None:
        """No virtual connection left: the HTTP/2 connection goes too (its pool kept none)."""
        if not self.virtuals and not self.streams:
            self._shut()

    def retire(self) -> None:
        """Take no new virtual connections; close once the streams in progress are done."""
        if self.going_away:
            return
        self.going_away = True  # its idle virtual connections no longer count as usable
        _unregister(self)
        if not self.streams:
            self._shut()

    # -- internals ---------------------------------------------------------------------------

    def _on_window(self, stream_id: int) -> None:
        if stream_id:
            virtual = self.streams.get(stream_id)
            if virtual is not None:
                virtual.on_window_open()
            return
        for virtual in list(self.streams.values()):  # the connection's window, or all streams'
            virtual.on_window_open()

    def _on_goaway(self, last_stream_id: int, error_code: int) -> None:
        # RFC 9113 §6.8: streams above last_stream_id were not processed, so they may go
        # elsewhere whatever their method; those below finish on this connection
        if error_code:
            log.info("%s sent GOAWAY: %s", self.name, error_name(error_code))
        # h2 closes its state machine on any GOAWAY, refusing the frames of the streams that
        # may still complete (python-hyper/h2#1181): reopen it; no new stream is started
        self.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        for stream_id, virtual in list(self.streams.items()):
            if stream_id > last_stream_id:
                virtual.refuse()
        self.retire()

    def _shut(self) -> None:
        if self.closed:
            return
        if not self.going_away:
            self.going_away = True
            _unregister(self)
        # a connection that never started has nothing to say goodbye on
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection()
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.going_away = True
        _unregister(self)
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError(f"{self.name} closed the connection"))
        for virtual in list(self.virtuals):
            virtual.on_connection_lost(exc)
        self.virtuals.clear()
        self.streams.clear()


# -- the sessions of each backend, per event loop ---------------------------------------------

_Key = tuple[str, int, str, int]  # host, port, TLS server name, id of the TLS context (0: h2c)
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, list[Session]]] = (
    weakref.WeakKeyDictionary()
)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a failed connect is reported to its openers; nobody else must


def _unregister(session: Session) -> None:
    sessions = _SESSIONS.get(session.loop, {}).get(session.key)
    if sessions is not None and session in sessions:
        sessions.remove(session)


async def open_h2(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.Protocol],
    backend: BackendState,
    ssl_context: ssl.SSLContext | None,
    server_name: str,
) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """A virtual connection to `backend` over its shared HTTP/2 connection (made if needed).

    h2c with prior knowledge when `ssl_context` is None (RFC 9113 §3.3), else TLS, whose
    context must offer ALPN "h2" (the connector asks evenflow.tls.client for it). Shaped as
    `loop.create_connection`: cancelling it (the connect timeout) cancels a connect it
    started; a connect already under way for another exchange is shared.
    """
    key = (backend.host, backend.port, server_name, id(ssl_context) if ssl_context else 0)
    by_key = _SESSIONS.setdefault(loop, {})
    sessions = by_key.setdefault(key, [])
    session = next((s for s in sessions if s.has_room()), None)
    if session is None:
        authority = backend.address.encode("latin-1")
        session = Session(loop, key, backend.address, ssl_context is not None, authority)
        sessions.append(session)
        virtual = session.open_virtual()
        fresh = session
        try:
            await loop.create_connection(
                lambda: fresh,
                backend.host,
                backend.port,
                ssl=ssl_context,
                server_hostname=server_name if ssl_context is not None else None,
            )
            await session.ready
        except BaseException as exc:
            session._lost(exc if isinstance(exc, Exception) else None)
            raise
    else:
        virtual = session.open_virtual()
        try:
            await asyncio.shield(session.ready)
        except BaseException:
            session.virtuals.discard(virtual)
            raise
    if virtual._closed:
        raise ConnectionError(f"HTTP/2 connection to {backend.address} closed")
    protocol = factory()
    virtual.protocol = protocol
    protocol.connection_made(virtual)
    return virtual, protocol
