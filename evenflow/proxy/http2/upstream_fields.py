"""HTTP/1.1 ↔ HTTP/2 field translation for streams to a backend (sans-IO, no h2 objects).

A request head parsed from the HTTP/1.1 bytes the exchange wrote becomes an HTTP/2 header
list; an HTTP/2 response's header list becomes the HTTP/1.1 head the upstream connection
parses, with the framing its body will arrive in. Nothing here knows of streams or sockets.
"""

from __future__ import annotations

from http import HTTPStatus

import httptools

# RFC 9113 §8.2.2: connection-specific fields are never sent in HTTP/2 (Host becomes
# :authority, §8.3.1); TE only as "trailers", handled apart
_CONNECTION_SPECIFIC = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"te",
    )
)

_GRPC = b"application/grpc"
_TE_TRAILERS = (b"te", b"trailers")

# how the body after a translated response head is framed for the HTTP/1.1 parser
BODY_NONE = 0  # no body follows (END_STREAM on the head, 1xx, 204, 304, HEAD)
BODY_LENGTH = 1  # DATA passed through as is, counted against content-length
BODY_CHUNKED = 2  # DATA framed as chunks, trailers in the last chunk

# RFC 9110 §15: status lines built once; HTTP/2 has no reason phrase, so evenflow adds one
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}


class FieldError(ValueError):
    """A message that cannot be translated (a response with an unusable :status or length)."""


def request_headers(
    method: bytes,
    url: bytes,
    fields: list[tuple[bytes, bytes]],
    scheme: bytes,
    default_authority: bytes,
) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list for an HTTP/1.1 request head (`fields`: lowercase names).

    :authority comes from Host (RFC 9113 §8.3.1), or from an absolute-form target, or is the
    backend's address; a gRPC call always carries `te: trailers`, which gRPC servers require
    and which an HTTP/1.1 hop may have dropped as hop-by-hop.
    """
    authority: bytes | None = None
    path = url
    if url[:1] != b"/" and url != b"*":
        parsed = httptools.parse_url(url)  # absolute form: RFC 9112 §3.2.2
        authority = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
        path = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
    named: set[bytes] = set()
    for name, value in fields:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    out = [(b":method", method), (b":scheme", scheme), (b":authority", b""), (b":path", path)]
    te_trailers = False
    grpc = False
    for name, value in fields:
        if name in _CONNECTION_SPECIFIC or name in named:
            if name == b"host" and authority is None:
                authority = value
            elif name == b"te" and value.strip().lower() == b"trailers":
                te_trailers = True
            continue
        if name == b"content-type" and value[:16].lower() == _GRPC:
            grpc = True
        out.append((name, value))
    if te_trailers or grpc:
        out.append(_TE_TRAILERS)
    out[2] = (b":authority", authority or default_authority)
    return out


def trailer_fields(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A chunked request's trailer fields as HTTP/2 trailers (no pseudo or hop-by-hop ones)."""
    return [(n, v) for n, v in fields if n not in _CONNECTION_SPECIFIC and n[:1] != b":"]


def response_head(
    headers: list[tuple[bytes, bytes]], ended: bool, is_head: bool
) -> tuple[bytes, int, int]:
    """(HTTP/1.1 head, body framing, content length) for an HTTP/2 response header list.

    `ended`: the HEADERS frame carried END_STREAM (no DATA follows: a gRPC trailers-only
    response). Its fields then go out as headers of an empty response: `content-length: 0`,
    so the client reads grpc-status where it would read trailers. A body without a length
    is framed as chunks, so trailers that follow it can be relayed as the last chunk's.
    """
    status = 0
    length = -1
    lines = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":status":
                if len(value) != 3 or not value.isdigit():
                    raise FieldError(f"invalid :status {value!r}")
                status = int(value)
            continue  # RFC 9113 §8.3.2: :status is the only response pseudo-header
        if name == b"content-length":
            if not value.isdigit() or (length >= 0 and int(value) != length):
                raise FieldError(f"invalid content-length {value!r}")
            length = int(value)
        lines.append(b"%s: %s\r\n" % (name, value))
    if status < 100:
        raise FieldError("response without :status")
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
    if status < 200 or status == 204 or status == 304 or is_head:
        mode = BODY_NONE  # RFC 9110 §6.4.1: these never have content
    elif ended:
        mode = BODY_NONE
        if length < 0:
            lines.append(b"content-length: 0\r\n")
            length = 0
    elif length >= 0:
        mode = BODY_LENGTH
    else:
        mode = BODY_CHUNKED
        lines.append(b"transfer-encoding: chunked\r\n")
    return b"".join((line, *lines, b"\r\n")), mode, length


LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (empty data would end the body: never asked)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def last_chunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    """The chunked body's end, carrying the HTTP/2 trailers as trailer fields."""
    return b"0\r\n" + b"".join([b"%s: %s\r\n" % pair for pair in trailers]) + b"\r\n"
