"""The few gRPC wire details evenflow needs without a gRPC library.

From grpc/doc/PROTOCOL-HTTP2.md and http-grpc-status-mapping.md: the `grpc-timeout` deadline,
the 5-byte message framing and the status codes. Pure functions, no I/O: the proxy reads a
call's deadline, the health probe frames one request and reads one response.
"""

from __future__ import annotations

OK = 0
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14

# PROTOCOL-HTTP2.md: TimeoutValue → {positive integer as ASCII string of at most 8 digits};
# TimeoutUnit → Hour / Minute / Second / Millisecond / Microsecond / Nanosecond
_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}


def parse_timeout(value: bytes) -> float | None:
    """The seconds a `grpc-timeout` value gives ("100m" → 0.1), or None when malformed."""
    if not 2 <= len(value) <= 9:
        return None
    scale = _TIMEOUT_UNITS.get(value[-1])
    digits = value[:-1]
    if scale is None or not digits.isdigit():
        return None
    return int(digits) * scale


def format_timeout(seconds: float) -> bytes:
    """A `grpc-timeout` value for `seconds` (at most 8 digits): milliseconds while they fit,
    rounded up so that a deadline never looks earlier than it is; seconds past that."""
    millis = -(-seconds * 1000 // 1)
    if millis < 100_000_000:
        return b"%dm" % max(millis, 1)
    return b"%dS" % min(-(-seconds // 1), 99_999_999)


def frame(message: bytes) -> bytes:
    """One uncompressed Length-Prefixed-Message: flag 0, 4-byte big-endian length, message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(data: bytes) -> list[bytes]:
    """The messages of a whole gRPC body; ValueError if it is cut or compressed."""
    messages = []
    at = 0
    while at < len(data):
        if len(data) - at < 5:
            raise ValueError("truncated message prefix")
        if data[at] != 0:
            raise ValueError("compressed message (evenflow asked for none)")
        size = int.from_bytes(data[at + 1 : at + 5], "big")
        if len(data) - at - 5 < size:
            raise ValueError("truncated message")
        messages.append(data[at + 5 : at + 5 + size])
        at += 5 + size
    return messages


# http-grpc-status-mapping.md: the gRPC status a client reports for an HTTP status without one
_FROM_HTTP = {400: INTERNAL, 401: 16, 403: 7, 404: UNIMPLEMENTED, 429: UNAVAILABLE}


def status_for_http(status: int) -> int:
    """The gRPC status for an HTTP error status (502, 503, 504: UNAVAILABLE)."""
    if status in (502, 503, 504):
        return UNAVAILABLE
    return _FROM_HTTP.get(status, UNKNOWN)
