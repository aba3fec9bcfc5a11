"""A backend that records the exact bytes it receives, for judging what a proxy forwards.

Every request is answered 200 with a small fixed body; httptools only finds where each request
ends so the answer goes out at the right time. What a desync judge asserts on is `connections`:
the raw bytes of each accepted connection, as received, before any parsing.
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

from evenflow.demo.base import DemoServer

BODY = b"recorded\n"
# What one connection may record: a judge's requests are small, and a proxy that streams a
# huge body must not exhaust the test's memory. Past it, `truncated` is set.
_MAX_RECORD_BYTES = 16 << 20


class RecordingBackend(DemoServer):
    """Answers every request `200 recorded`; keeps each connection's received bytes.

    - `connections`: one bytearray per accepted connection, in accept order, holding every
      byte received on it (also bytes after a request that closed it, or a parse error).
    - `requests`: requests answered 200; `errors`: connections answered 400 and closed because
      httptools refused what they sent.
    - `truncated`: a connection sent more than 16 MiB; the rest was not recorded.
    """

    def __init__(self, name: str = "recorder") -> None:
        super().__init__(name)
        self.connections: list[bytearray] = []
        self.requests = 0
        self.errors = 0
        self.truncated = False
        header = b"x-backend: %s\r\ncontent-type: text/plain\r\n" % name.encode()
        self.head = b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n" % (header, len(BODY))
        self.bad_request = (
            b"HTTP/1.1 400 Bad Request\r\n%scontent-length: 12\r\nconnection: close\r\n\r\n"
            b"bad request\n" % header
        )

    def make_protocol(self) -> asyncio.Protocol:
        return _RecordingConnection(self)

    def received(self) -> bytes:
        """Everything received, connections concatenated in accept order."""
        return b"".join(self.connections)

    def reset(self) -> None:
        self.connections.clear()
        self.requests = 0
        self.errors = 0
        self.truncated = False


class _RecordingConnection(asyncio.Protocol):
    __slots__ = ("_backend", "_transport", "_parser", "_record", "_is_head", "_closing")

    def __init__(self, backend: RecordingBackend) -> None:
        self._backend = backend
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._record = bytearray()
        self._is_head = False
        # Set once a request ended the connection or the bytes could not be parsed.
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._backend.connections_open.add(self._transport)
        self._backend.connections.append(self._record)

    def connection_lost(self, exc: Exception | None) -> None:
        self._backend.connections_open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        room = _MAX_RECORD_BYTES - len(self._record)
        if len(data) > room:
            self._backend.truncated = True
        self._record += data[:room] if len(data) > room else data
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # answered as plain HTTP, and the connection closes
        except httptools.HttpParserError:
            if not self._closing and self._transport is not None:
                self._closing = True
                self._backend.errors += 1
                self._transport.write(self._backend.bad_request)
                self._transport.close()

    def on_headers_complete(self) -> None:
        self._is_head = self._parser.get_method() == b"HEAD"

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        parser = self._parser
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        backend = self._backend
        backend.requests += 1
        head = backend.head if keep_alive else backend.head + b"connection: close\r\n"
        transport.write(head + b"\r\n" if self._is_head else head + b"\r\n" + BODY)
        if not keep_alive:
            self._closing = True
            transport.close()
