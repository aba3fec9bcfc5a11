"""One active probe of one backend: a TCP connect, or an HTTP request (control plane).

Probes open their own connections (never the data plane's) with asyncio streams: they are
rare, so clarity wins over speed here. Each returns (ok, detail); detail says what failed in
words an operator can act on ("connect refused", "status 503", "timeout after 1s").
"""

from __future__ import annotations

import asyncio

import httptools

from evenflow.config.health import HttpProbe
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


def describe(kind: str, spec: HttpProbe | None) -> str:
    """The probe's name in logs: "GET /healthz" or "tcp connect"."""
    if kind == "http" and spec is not None:
        return f"{spec.method} {spec.path}"
    return "tcp connect"
