"""One demo backend connection: parse requests with httptools, answer them in order.

Owns HTTP/1.1 framing for the demo backend: keep-alive, pipelining, Content-Length and chunked
bodies both ways, HEAD, 100-continue, and bodies generated a block at a time with backpressure.
What each path answers is decided here too; counters and health live on the DemoBackend.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl

import httptools

if TYPE_CHECKING:
    from evenflow.demo.backend import DemoBackend

logger = logging.getLogger(__name__)

# size=N bodies repeat this 64 KiB block (line i of the block: i as 15 zero-padded digits and
# "\n") and are written one block at a time, so any size costs one block of memory.
BLOCK = b"".join(b"%015d\n" % i for i in range(4096))
_BLOCK_VIEW = memoryview(BLOCK)
# Hand the loop back after this many bytes written without a pause, so that one fast reader of
# a huge body cannot starve the other connections.
_YIELD_BYTES = 1 << 20
# A request head still incomplete after this many bytes is refused (431): the parser buffers a
# header until it ends, and a head that never ends must not cost unbounded memory.
_MAX_HEAD_BYTES = 1 << 20
# Pipelined requests waiting for their turn; past it the connection stops reading (after the
# current read) until the queue halves, so a client that sends without reading costs bounded
# memory: at most this many requests plus those in one read.
_MAX_QUEUED = 64
_MAX_DELAY_MS = 3_600_000
_MAX_SIZE = 1 << 40

CONTROL_HEALTH = "/_control/health"
_TEXT = b"text/plain"
_JSON = b"application/json"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
# RFC 9110 §15.3.5, §15.4.5: these statuses never carry content, so no framing header either.
_NO_CONTENT = frozenset({204, 304})
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def _int_option(value: str, low: int, high: int) -> int | None:
    if not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if low <= number <= high else None


class _Request:
    """One request from its first byte until its response is handed to the transport."""

    __slots__ = (
        "url",
        "target",
        "path",
        "method",
        "headers",
        "keep_alive",
        "head_done",
        "expects_continue",
        "body_bytes",
        "hasher",
        "delay_s",
        "status",
        "size",
        "chunked",
        "ok",
        "error",
    )

    def __init__(self) -> None:
        self.url = b""
        self.target = ""
        self.path = ""
        self.method = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.head_done = False
        self.expects_continue = False
        self.body_bytes = 0
        self.hasher: hashlib._Hash | None = None
        self.delay_s = 0.0
        self.status: int | None = None
        self.size: int | None = None
        self.chunked = False
        self.ok: bool | None = None
        self.error: tuple[int, str] | None = None

    def read_target(self) -> None:
        """Split the target into path and options; a bad option becomes a 400."""
        target = self.target = self.url.decode("latin-1")
        if target.startswith("/"):
            path, _, query = target.partition("?")
        else:
            # absolute-form (RFC 9112 §3.2.2) or `*`: let the URL parser find the path.
            try:
                parts = httptools.parse_url(self.url)
            except httptools.HttpParserInvalidURLError:
                path, query = target, ""
            else:
                path = (parts.path or b"/").decode("latin-1")
                query = (parts.query or b"").decode("latin-1")
        self.path = path
        if not query:
            return
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == "delay":
                ms = _int_option(value, 0, _MAX_DELAY_MS)
                if ms is None:
                    return self._bad_option(key, value, f"milliseconds, 0..{_MAX_DELAY_MS}")
                self.delay_s = ms / 1000
            elif key == "status":
                self.status = _int_option(value, 200, 599)
                if self.status is None:
                    return self._bad_option(key, value, "a status code, 200..599")
            elif key == "size":
                self.size = _int_option(value, 0, _MAX_SIZE)
                if self.size is None:
                    return self._bad_option(key, value, f"bytes, 0..{_MAX_SIZE}")
            elif key in ("chunked", "ok"):
                if value not in ("0", "1"):
                    return self._bad_option(key, value, "0 or 1")
                if key == "chunked":
                    self.chunked = value == "1"
                else:
                    self.ok = value == "1"

    def _bad_option(self, key: str, value: str, want: str) -> None:
        self.error = (400, f"bad query option {key}={value!r}: want {want}")


class BackendConnection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order, one at a time."""

    __slots__ = (
        "_backend",
        "_loop",
        "_transport",
        "_parser",
        "_current",
        "_head_bytes",
        "_queue",
        "_unanswered",
        "_task",
        "_closing",
        "_lost",
        "_writable",
        "_write_waiter",
        "_reading_paused",
    )

    def __init__(self, backend: DemoBackend) -> None:
        self._backend = backend
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        # The request being parsed, and bytes seen while its head is incomplete.
        self._current: _Request | None = None
        self._head_bytes = 0
        # Parsed requests waiting for their turn, and how many requests (queued, being parsed
        # or being answered) still count in the backend's in_flight.
        self._queue: collections.deque[_Request] = collections.deque()
        self._unanswered = 0
        # The answer in progress when it must wait (delay, or a body written in pieces).
        self._task: asyncio.Task[None] | None = None
        # No more requests are read after one that ends the connection (RFC 9112 §9.6).
        self._closing = False
        self._lost = False
        self._writable = True
        self._write_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False

    # --- transport callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._backend.connections_open.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._backend.connections_open.discard(self._transport)
        self._backend.in_flight -= self._unanswered
        self._unanswered = 0
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self._wake_writer()
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request was answered as plain HTTP and ends the connection: the demo backend
            # speaks no other protocol.
            pass
        except httptools.HttpParserCallbackError:
            logger.exception("demo backend %s: parser callback failed", self._backend.name)
            self._fail(500, "internal error")
        except httptools.HttpParserError as exc:
            if not self._closing:  # else: bytes after `Connection: close`, ignored
                self._fail(400, f"bad request: {exc}")
            return
        request = self._current
        if request is not None and not request.head_done:
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD_BYTES:
                self._fail(431, "request head too large")

    # --- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._current = _Request()
        self._head_bytes = 0
        self._unanswered += 1
        self._backend.in_flight += 1

    def on_url(self, piece: bytes) -> None:
        assert self._current is not None
        self._current.url += piece

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        assert request is not None
        request.headers.append((name, value))
        if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            request.expects_continue = True

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        parser = self._parser
        request.head_done = True
        request.method = parser.get_method().decode("latin-1")
        request.keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        request.read_target()
        if request.path == "/echo":
            request.hasher = hashlib.sha256()
        # Only when nothing is ahead of it: a 100 must not cut into an earlier response.
        if (
            request.expects_continue
            and request.error is None
            and not self._queue
            and self._task is None
            and self._transport is not None
        ):
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        request = self._current
        assert request is not None
        request.body_bytes += len(body)
        if request.hasher is not None:
            request.hasher.update(body)

    def on_message_complete(self) -> None:
        request = self._current
        assert request is not None
        self._current = None
        self._queue.append(request)
        if not request.keep_alive:
            self._closing = True
        if len(self._queue) >= _MAX_QUEUED and not self._reading_paused and self._transport:
            self._reading_paused = True
            self._transport.pause_reading()
        self._pump()

    # --- answering --------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        request = self._current
        if request is None:
            request = _Request()
            self._unanswered += 1
            self._backend.in_flight += 1
        self._current = None
        request.error = (status, message)
        request.keep_alive = False
        request.delay_s = 0.0
        self._closing = True
        self._queue.append(request)
        self._pump()

    def _pump(self) -> None:
        """Answer queued requests in order until one must wait or writing is paused."""
        transport = self._transport
        if transport is None:
            return
        while self._queue and self._task is None and self._writable:
            if transport.is_closing():
                return
            request = self._queue.popleft()
            if request.delay_s > 0 or (request.size or 0) > len(BLOCK):
                self._task = self._loop.create_task(self._answer_later(request))
                self._task.add_done_callback(self._on_answered_later)
                break
            self._answer_now(request, transport)
        if self._reading_paused and len(self._queue) <= _MAX_QUEUED // 2 and not self._lost:
            self._reading_paused = False
            transport.resume_reading()

    def _content(self, request: _Request) -> tuple[int, bytes, bytes | int]:
        """Status, content type, and the body or the size of the body to generate."""
        backend = self._backend
        status = 200
        content_type = _TEXT
        body: bytes | int
        if request.error is not None:
            status, message = request.error
            return status, _TEXT, message.encode() + b"\n"
        path = request.path
        if path == "/healthz":
            status, body = (200, b"ok") if backend.healthy else (503, b"unhealthy")
        elif path == "/echo":
            content_type, body = _JSON, self._echo(request)
        elif path == CONTROL_HEALTH:
            if request.method != "POST":
                status, body = 405, b"use POST /_control/health?ok=0|1\n"
            elif request.ok is None:
                status, body = 400, b"missing query option ok=0|1\n"
            else:
                backend.healthy = request.ok
                body = b"healthy" if request.ok else b"unhealthy"
        else:
            body = b"backend %s: %s %s\n" % (
                backend.name.encode(),
                request.method.encode("latin-1"),
                request.url,
            )
        if request.status is not None:
            status = request.status
        if request.size is not None:
            body = request.size
        return status, content_type, body

    def _echo(self, request: _Request) -> bytes:
        assert request.hasher is not None
        return json.dumps(
            {
                "backend": self._backend.name,
                "method": request.method,
                "path": request.target,
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers],
                "body_bytes": request.body_bytes,
                "body_sha256": request.hasher.hexdigest(),
            }
        ).encode()

    def _head(
        self, request: _Request, status: int, content_type: bytes, length: int, chunked: bool
    ) -> list[bytes]:
        head = [
            _status_line(status),
            self._backend.name_header,
            b"content-type: ",
            content_type,
            b"\r\n",
        ]
        if status not in _NO_CONTENT:
            if chunked:
                head.append(b"transfer-encoding: chunked\r\n")
            else:
                head.append(b"content-length: %d\r\n" % length)
        if not request.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        return head

    def _answer_now(self, request: _Request, transport: asyncio.Transport) -> None:
        status, content_type, body = self._content(request)
        length = body if isinstance(body, int) else len(body)
        out = self._head(request, status, content_type, length, request.chunked)
        if request.method != "HEAD" and status not in _NO_CONTENT:
            if isinstance(body, int):
                # Larger generated bodies go through _answer_later, a block at a time.
                assert body <= len(BLOCK)
                body = BLOCK[:body]
            if not request.chunked:
                out.append(body)
            elif body:
                out += (b"%x\r\n" % len(body), body, b"\r\n", _LAST_CHUNK)
            else:
                out.append(_LAST_CHUNK)
        self._backend.on_answered(request.path)
        self._unanswered -= 1
        transport.write(b"".join(out))
        if not request.keep_alive:
            transport.close()

    async def _answer_later(self, request: _Request) -> None:
        if request.delay_s > 0:
            await asyncio.sleep(request.delay_s)
        transport = self._transport
        assert transport is not None
        status, content_type, body = self._content(request)
        has_body = request.method != "HEAD" and status not in _NO_CONTENT
        if isinstance(body, bytes) or not has_body or body <= len(BLOCK):
            self._answer_now(request, transport)
            return
        transport.write(b"".join(self._head(request, status, content_type, body, request.chunked)))
        remaining = body
        since_yield = 0
        while remaining:
            if not self._writable:
                await self._until_writable()
            if self._lost:
                return
            n = min(remaining, len(BLOCK))
            remaining -= n
            piece = BLOCK if n == len(BLOCK) else _BLOCK_VIEW[:n]
            if not remaining:
                self._backend.on_answered(request.path)
                self._unanswered -= 1
            if request.chunked:
                trailer = b"\r\n" + _LAST_CHUNK if not remaining else b"\r\n"
                transport.writelines((b"%x\r\n" % n, piece, trailer))
            else:
                transport.write(piece)
            since_yield += n
            if since_yield >= _YIELD_BYTES and remaining:
                since_yield = 0
                await asyncio.sleep(0)
        if not request.keep_alive:
            transport.close()

    async def _until_writable(self) -> None:
        self._write_waiter = self._loop.create_future()
        try:
            await self._write_waiter
        finally:
            self._write_waiter = None

    def _wake_writer(self) -> None:
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_answered_later(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("demo backend %s: answer failed", self._backend.name, exc_info=exc)
            if self._transport is not None:
                self._transport.abort()
            return
        self._pump()
