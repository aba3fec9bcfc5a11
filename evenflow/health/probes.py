"""One active probe of one backend: a TCP connect, an HTTP request, a gRPC health check.

Probes open their own connections (never the data plane's) with asyncio streams: they are
rare, so clarity wins over speed here. Each returns (ok, detail); detail says what failed in
words an operator can act on ("connect refused", "status 503", "timeout after 1s").
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httptools

from evenflow.config.health import GrpcProbe, HttpProbe
from evenflow.core import grpc
from evenflow.core.errors import describe_os_error

MAX_PROBE_BODY = 64 * 1024  # body_contains looks at this much; the rest is not read


async def probe_tcp(host: str, port: int, timeout_s: float) -> tuple[bool, str]:
    """Pass when the backend accepts a TCP connection within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: see checker.py
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"connect timeout after {timeout_s:g}s"
    except OSError as exc:
        return False, f"connect failed: {describe_os_error(exc)}"
    writer.close()
    return True, "connected"


class _Response:
    """llhttp callbacks collecting a probe's response status and (the start of its) body."""

    def __init__(self, head_only: bool) -> None:
        self.head_only = head_only  # a HEAD response has no body whatever its headers say
        self.body = bytearray()
        self.complete = False

    def on_headers_complete(self) -> None:
        if self.head_only:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if len(self.body) < MAX_PROBE_BODY:
            self.body += body[: MAX_PROBE_BODY - len(self.body)]

    def on_message_complete(self) -> None:
        self.complete = True


async def probe_http(
    host: str, port: int, spec: HttpProbe, timeout_s: float, default_host: str
) -> tuple[bool, str]:
    """Send one HTTP/1.1 request; pass when the status (and body) match `spec`."""
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: see checker.py
            return await _http(host, port, spec, default_host)
    except TimeoutError:
        return False, f"timeout after {timeout_s:g}s"
    except OSError as exc:
        return False, f"connect failed: {describe_os_error(exc)}"


async def _http(host: str, port: int, spec: HttpProbe, default_host: str) -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        request = (
            f"{spec.method} {spec.path} HTTP/1.1\r\n"
            f"Host: {spec.host or default_host}\r\n"
            "User-Agent: evenflow-health-check\r\n"
            "Accept: */*\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        response = _Response(head_only=spec.method == "HEAD")
        parser = httptools.HttpResponseParser(response)
        while not response.complete:
            data = await reader.read(65536)
            if not data:
                break
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                if response.complete:
                    break
                return False, f"invalid response: {exc}"
        status = parser.get_status_code()
        if not status:
            return False, "no response"
        if not any(low <= status <= high for low, high in spec.expect_status):
            return False, f"status {status}"
        wanted = spec.body_contains
        if wanted is not None and wanted.encode() not in response.body:
            return False, f"status {status} but body lacks {wanted!r}"
        return True, f"status {status}"
    finally:
        writer.close()


def describe(kind: str, spec: HttpProbe | GrpcProbe | None) -> str:
    """The probe's name in logs: "GET /healthz", "grpc health users.v1.Users", "tcp connect"."""
    if isinstance(spec, HttpProbe):
        return f"{spec.method} {spec.path}"
    if isinstance(spec, GrpcProbe):
        return f"grpc health {spec.service}" if spec.service else "grpc health"
    return "tcp connect"


# grpc/doc/health-checking.md: rpc Check(HealthCheckRequest) returns (HealthCheckResponse)
GRPC_HEALTH_PATH = "/grpc.health.v1.Health/Check"
_SERVING_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_SERVING = 1


async def probe_grpc(
    host: str,
    port: int,
    spec: GrpcProbe,
    timeout_s: float,
    default_authority: str,
    ssl_context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> tuple[bool, str]:
    """One grpc.health.v1.Health/Check call over HTTP/2: h2c, or h2 over TLS with a context
    that offers ALPN h2.

    Passes when the answer has grpc-status 0 and the status SERVING.
    """
    try:
        return await asyncio.wait_for(
            _grpc(host, port, spec, timeout_s, default_authority, ssl_context, server_name),
            timeout_s,
        )
    except TimeoutError:
        return False, f"timeout after {timeout_s:g}s"
    except OSError as exc:
        return False, f"connect failed: {describe_os_error(exc)}"


async def _grpc(
    host: str,
    port: int,
    spec: GrpcProbe,
    timeout_s: float,
    default_authority: str,
    ssl_context: ssl.SSLContext | None,
    server_name: str | None,
) -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl_context, server_hostname=server_name if ssl_context else None
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            return False, "no HTTP/2 over TLS (the backend did not agree to ALPN h2)"
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"https" if ssl_context is not None else b"http"),
                (b":authority", (spec.authority or default_authority).encode("latin-1")),
                (b":path", GRPC_HEALTH_PATH.encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"grpc-timeout", b"%dm" % max(1, int(timeout_s * 1000))),
                (b"user-agent", b"evenflow-health-check"),
            ],
        )
        conn.send_data(stream_id, grpc.frame(_health_request(spec.service)), end_stream=True)
        writer.write(conn.data_to_send())
        fields: dict[bytes, bytes] = {}  # response headers, then trailers over them
        body = bytearray()
        while True:
            data = await reader.read(65536)
            if not data:
                return False, "connection closed before the answer"
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                return False, f"HTTP/2 protocol error: {exc}"
            for event in events:
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    fields.update(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    if len(body) < MAX_PROBE_BODY:
                        body += event.data or b""
                    conn.acknowledge_received_data(event.flow_controlled_length or 0, stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    return False, f"stream reset: error {event.error_code}"
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return False, f"connection closed (GOAWAY, error {event.error_code})"
                elif isinstance(event, h2.events.StreamEnded):
                    return _health_verdict(fields, bytes(body))
            writer.write(conn.data_to_send())
    finally:
        writer.close()


def _health_verdict(fields: dict[bytes, bytes], body: bytes) -> tuple[bool, str]:
    status = fields.get(b":status", b"")
    if status != b"200":
        return False, f"HTTP status {status.decode('latin-1') or 'missing'}"
    code = fields.get(b"grpc-status")
    if code is None:
        return False, "no grpc-status"
    if code != b"0":
        message = unquote(fields.get(b"grpc-message", b"").decode("latin-1"))
        return False, f"grpc-status {code.decode('latin-1')}" + (f": {message}" if message else "")
    try:
        messages = grpc.unframe(body)
        serving = _serving_status(messages[-1]) if messages else -1
    except ValueError as exc:
        return False, f"invalid answer: {exc}"
    if serving == _SERVING:
        return True, "SERVING"
    return False, _SERVING_NAMES.get(serving, f"status {serving}") if serving >= 0 else "no answer"


def _health_request(service: str) -> bytes:
    """HealthCheckRequest { string service = 1; } as protobuf: tag 0x0a, length, UTF-8."""
    name = service.encode()
    return b"\x0a" + _varint(len(name)) + name if name else b""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated protobuf varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _serving_status(message: bytes) -> int:
    """Field 1 (enum status) of a HealthCheckResponse; 0 (UNKNOWN) when absent (proto3)."""
    status = 0
    at = 0
    while at < len(message):
        key, at = _read_varint(message, at)
        wire = key & 7
        if wire == 0:
            value, at = _read_varint(message, at)
            if key >> 3 == 1:
                status = value
        elif wire == 2:
            size, at = _read_varint(message, at)
            at += size
        elif wire == 1 or wire == 5:
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire} in HealthCheckResponse")
    if at > len(message):
        raise ValueError("truncated HealthCheckResponse")
    return status
