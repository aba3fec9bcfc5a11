"""HTTP/1.1 message heads: canned responses, hop-by-hop rules, and head (re)building.

Bytes are passed through wherever nothing must change: a request head is forwarded as the client
sent it with evenflow's headers spliced in before the blank line, and rebuilt from its parsed
fields only when a hop-by-hop header, a rewrite or a version change requires it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

# RFC 9110 §7.6.1: Connection and the fields it names are for this hop only; so are these.
HOP_BY_HOP: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
        b"transfer-encoding",
    )
)

# Request fields evenflow sets itself: a client's own value is replaced (not trusted).
FORWARDED_SET_BY_US: Final = frozenset((b"x-forwarded-proto", b"x-forwarded-host"))

VIA: Final = b"1.1 evenflow"

# RFC 9110 §9.2.2
IDEMPOTENT_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


def canned_response(status: int, detail: str = "", *, close: bool = False) -> bytes:
    """A complete short response for errors evenflow answers itself (text body, no cache)."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}{': ' + detail if detail else ''}\n".encode("latin-1", "replace")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        f"content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        f"cache-control: no-store\r\n"
        f"{'connection: close' + chr(13) + chr(10) if close else ''}"
        "\r\n"
    ).encode("latin-1")
    return head + body


def grpc_error(code: int, message: str, *, close: bool = False) -> bytes:
    """An error for a gRPC call: 200, no body, `grpc-status` and `grpc-message` as headers."""
    # PROTOCOL-HTTP2.md: grpc-message is percent-encoded UTF-8, printable ASCII but % as is
    encoded = b"".join(
        [
            b"%c" % byte if 0x20 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte
            for byte in message.encode("utf-8")
        ]
    )
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: %d\r\n"
        b"grpc-message: %s\r\ncontent-length: 0\r\n%s\r\n"
        % (code, encoded, b"connection: close\r\n" if close else b"")
    )


CANNED: Final = {
    status: canned_response(status, close=True)
    for status in (400, 404, 408, 413, 414, 431, 500, 501, 502, 503, 504, 505)
}
CANNED_KEEP_ALIVE: Final = {status: canned_response(status) for status in (404, 413, 502, 503, 504)}


def status_line(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """The lowercase tokens of every Connection header value (`close`, `keep-alive`, names)."""
    tokens: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return tokens


def serialize_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """`name: value\\r\\n` lines for every pair, in order."""
    return b"".join([b"%s: %s\r\n" % pair for pair in headers])


def chunk(data: bytes) -> list[bytes]:
    """`data` framed as one chunk of a chunked body, as pieces for writelines (no copy)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK: Final = b"0\r\n\r\n"


def last_chunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + serialize_headers(trailers) + b"\r\n"
