"""The one error family of evenflow's data plane.

Every error says which side failed, whether retrying the request elsewhere is safe, and the
status to answer the client with. Only the I/O layer turns an error into a response or a reset.
"""

from __future__ import annotations

import asyncio
import enum


class Side(enum.Enum):
    DOWNSTREAM = "downstream"  # the client did something wrong
    UPSTREAM = "upstream"  # a backend failed
    INTERNAL = "internal"  # evenflow itself


class ProxyError(Exception):
    """Base class: carries the side, whether a retry is safe, and the status to answer."""

    side = Side.INTERNAL
    status = 500
    retry_safe = False
    reason = "internal error"
    kind = "internal"  # a short word for metrics labels and logs
    # the gRPC status a gRPC client is answered with; None: derived from `status`
    # (grpc/doc/http-grpc-status-mapping.md, see core/grpc.py)
    grpc_status: int | None = None

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason


class BadRequest(ProxyError):
    side = Side.DOWNSTREAM
    status = 400
    reason = "bad request"
    kind = "bad_request"


class VersionNotSupported(ProxyError):
    side = Side.DOWNSTREAM
    status = 505
    reason = "HTTP version not supported"
    kind = "bad_version"


class HeadersTooLarge(ProxyError):
    side = Side.DOWNSTREAM
    status = 431
    reason = "request header fields too large"
    kind = "headers_too_large"


class BodyTooLarge(ProxyError):
    side = Side.DOWNSTREAM
    status = 413
    reason = "request body too large"
    kind = "body_too_large"


class RequestTimeout(ProxyError):
    side = Side.DOWNSTREAM
    status = 408
    reason = "request header timeout"
    kind = "client_timeout"


class NoRoute(ProxyError):
    side = Side.DOWNSTREAM
    status = 404
    reason = "no route matches"
    kind = "no_route"


class NoBackend(ProxyError):
    side = Side.UPSTREAM
    status = 503
    reason = "no healthy backend"
    kind = "no_backend"


class ConnectFailed(ProxyError):
    """The backend could not be reached: nothing was sent, so any method may be retried."""

    side = Side.UPSTREAM
    status = 502
    retry_safe = True
    reason = "connect failed"
    kind = "connect_failed"


class ConnectTimeout(ConnectFailed):
    status = 504
    reason = "connect timeout"
    kind = "connect_timeout"


class UpstreamReset(ProxyError):
    """The backend closed or reset the connection after the request was sent."""

    side = Side.UPSTREAM
    status = 502
    reason = "upstream reset"
    kind = "reset"


class UpstreamTimeout(ProxyError):
    side = Side.UPSTREAM
    status = 504
    reason = "upstream response timeout"
    kind = "timeout"


class DeadlineExceeded(UpstreamTimeout):
    """A gRPC call's deadline (its grpc-timeout) passed before the backend finished answering."""

    reason = "deadline exceeded"
    kind = "deadline"
    grpc_status = 4  # DEADLINE_EXCEEDED


class StreamRefused(ConnectFailed):
    """An HTTP/2 backend refused a stream before processing it (REFUSED_STREAM, or a GOAWAY
    below its id): RFC 9113 §8.7 says any request may then be retried."""

    status = 502
    reason = "stream refused"
    kind = "refused"


class UpstreamProtocolError(ProxyError):
    side = Side.UPSTREAM
    status = 502
    reason = "invalid upstream response"
    kind = "bad_response"


def describe_os_error(exc: OSError) -> str:
    """A short, plain reason for a socket error ("connection refused"), not Python's wording."""
    # ssl.SSLError: its errno is OpenSSL's error kind, not the OS's; the reason says what failed
    tls_reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    if isinstance(tls_reason, str) and tls_reason:
        return "TLS: " + tls_reason.replace("_", " ").lower().rstrip(".")
    if exc.errno:
        import os

        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def connect_error(exc: BaseException, address: str, timeout_s: float) -> ConnectFailed:
    """The evenflow error for a failed connect (a cancel is the connect timer), saying to whom."""
    if isinstance(exc, asyncio.CancelledError | TimeoutError):
        return ConnectTimeout(f"connect to {address} timed out after {timeout_s:g}s")
    if isinstance(exc, OSError):
        return ConnectFailed(f"connect to {address} failed: {describe_os_error(exc)}")
    return ConnectFailed(f"connect to {address} failed: {exc}")
