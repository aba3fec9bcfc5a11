"""Helpers for the HTTP/2 integration tests: evenflow in process, backends, a raw h2 client.

Everything binds 127.0.0.1. The raw client drives h2's client-side state machine over asyncio
streams, so a test can send what httpx never would (floods, trailers, malformed fields) and see
every frame evenflow answers with. Each read is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    ResponseReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes, Settings

from evenflow.config.load import load_data
from evenflow.proxy.http1.downstream import HttpListenerContext
from evenflow.server import Server, StartupError

READ_TIMEOUT_S = 5.0
# DemoBackend's generated `size=N` bodies: this 64 KiB block, repeated (see its docstring)
FILL = b"".join(b"%015d\n" % i for i in range(4096))


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    whole, rest = divmod(size, len(FILL))
    for _ in range(whole):
        digest.update(FILL)
    digest.update(FILL[:rest])
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(
    pools: dict[str, Any],
    *,
    routes: list[dict[str, Any]] | None = None,
    pool: str | None = None,
    http2: dict[str, Any] | None = None,
    timeouts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": "web", "bind": "127.0.0.1:1"}
    for key, value in (("routes", routes), ("pool", pool), ("http2", http2)):
        if value is not None:
            listener[key] = value
    if timeouts is not None:
        listener["timeouts"] = timeouts
    return {"listeners": [listener], "pools": pools}


@dataclass
class Proxy:
    server: Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ctx(self) -> HttpListenerContext:
        ctx = self.server.listening["web"].ctx
        assert isinstance(ctx, HttpListenerContext)
        return ctx


@contextlib.asynccontextmanager
async def running_proxy(data: dict[str, Any], log_dir: Path) -> AsyncIterator[Proxy]:
    """evenflow in this event loop with `data` as its config, stopped (drained) on exit."""
    server: Server | None = None
    for _ in range(5):
        data["listeners"][0]["bind"] = f"127.0.0.1:{free_port()}"
        data.setdefault("access_log", {"path": str(log_dir / "access.log")})
        data.setdefault("drain_timeout", "1s")
        server = Server(load_data(data).config)
        try:
            await server.start()
            break
        except StartupError:
            server = None  # the port was taken meanwhile: try another
    assert server is not None, "evenflow could not bind a listener in 5 tries"
    port = int(server.bound("web").rpartition(":")[2])
    try:
        yield Proxy(server, port)
    finally:
        await asyncio.wait_for(server.stop(), 10)


# --- a raw HTTP/2 client ---------------------------------------------------------------------


@dataclass
class Answer:
    headers: dict[bytes, bytes]
    body: bytes
    trailers: list[tuple[bytes, bytes]]
    reset: int | None = None  # the RST_STREAM error code, when the stream was reset


class RawH2:
    """One h2c (prior knowledge) connection driven frame by frame."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: H2Connection
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.events: list[Event] = []  # everything received so far
        self.eof = False

    @classmethod
    async def open(cls, port: int, *, validate: bool = True, window: int | None = None) -> RawH2:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = H2Connection(
            H2Configuration(
                header_encoding=None,
                validate_outbound_headers=validate,
                normalize_outbound_headers=validate,
            )
        )
        if window is not None:
            conn.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        conn.initiate_connection()
        client = cls(reader, writer, conn)
        client.flush()
        return client

    async def settled(self) -> None:
        """Wait until the SETTINGS exchange is over (nothing of ours is left to send)."""
        await self.receive(
            lambda: (
                any(isinstance(e, SettingsAcknowledged) for e in self.events)
                and any(isinstance(e, RemoteSettingsChanged) for e in self.events)
            )
        )

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def receive(self, until: Callable[[], bool], timeout: float = READ_TIMEOUT_S) -> None:
        """Read and process frames until `until()` holds or the server closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until() and not self.eof:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), deadline - loop.time())
            except TimeoutError:
                return
            except ConnectionError:
                data = b""
            if not data:
                self.eof = True
                break
            events = self.conn.receive_data(data)
            self.events += events
            if any(isinstance(e, ConnectionTerminated) and not e.error_code for e in events):
                # h2 stops at any GOAWAY; a graceful one still delivers the streams in flight
                self.conn.state_machine.state = ConnectionState.CLIENT_OPEN
            self.flush()

    def headers(self, path: str, *extra: tuple[str, str], method: str = "GET") -> list[Any]:
        return [
            (":method", method),
            (":scheme", "http"),
            (":authority", "test.local"),
            (":path", path),
            *extra,
        ]

    def start(
        self, path: str, *extra: tuple[str, str], method: str = "GET", end: bool = True
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, self.headers(path, *extra, method=method), end_stream=end)
        self.flush()
        return sid

    def done(self, sid: int) -> bool:
        return any(
            isinstance(e, StreamEnded | StreamReset) and e.stream_id == sid for e in self.events
        )

    def goaway(self) -> ConnectionTerminated | None:
        found = [e for e in self.events if isinstance(e, ConnectionTerminated)]
        return found[0] if found else None

    def answer(self, sid: int) -> Answer:
        """The response of stream `sid`, from the events received so far (acknowledged)."""
        headers: dict[bytes, bytes] = {}
        body = bytearray()
        trailers: list[tuple[bytes, bytes]] = []
        reset = None
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, ResponseReceived):
                headers = dict(e.headers)  # type: ignore[arg-type]
            elif isinstance(e, DataReceived):
                body += e.data  # type: ignore[operator]
            elif isinstance(e, TrailersReceived):
                trailers = list(e.headers)  # type: ignore[arg-type]
            elif isinstance(e, StreamReset):
                reset = e.error_code
        return Answer(headers, bytes(body), trailers, reset)

    async def request(
        self, path: str, *extra: tuple[str, str], method: str = "GET", body: bytes = b""
    ) -> Answer:
        sid = self.start(path, *extra, method=method, end=not body)
        if body:
            await self.send_body(sid, body, end=True)
        await self.receive(lambda: self.done(sid))
        return self.answer(sid)

    async def send_body(self, sid: int, body: bytes, end: bool) -> None:
        """`body` on stream `sid` within the windows evenflow grants (waiting for updates)."""
        view = memoryview(body)
        while view:
            window = self.conn.local_flow_control_window(sid)
            size = min(window, self.conn.max_outbound_frame_size, len(view))
            if size == 0:
                await self.receive(lambda: self.conn.local_flow_control_window(sid) > 0)
                continue
            self.conn.send_data(sid, bytes(view[:size]), end_stream=end and size == len(view))
            view = view[size:]
            self.flush()
        if end and not body:
            self.conn.end_stream(sid)
            self.flush()
        await self.writer.drain()

    def acknowledge(self) -> None:
        """Give back the window of every DATA received so far (a reading client)."""
        for e in self.events:
            if isinstance(e, DataReceived) and not getattr(e, "acked", False):
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)  # type: ignore[arg-type]
                e.acked = True  # type: ignore[attr-defined]
        self.flush()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_h2(port: int, **kwargs: Any) -> AsyncIterator[RawH2]:
    client = await RawH2.open(port, **kwargs)
    try:
        yield client
    finally:
        await client.close()


# --- a scripted HTTP/1.1 backend ---------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_backend(handler: Handler) -> AsyncIterator[str]:
    """A backend whose every connection runs `handler`; yields its address."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.sleep(0)
        await server.wait_closed()
