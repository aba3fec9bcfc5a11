"""HTTP/2 ↔ HTTP/1.1 field translation for streams from clients (sans-IO, no h2 objects).

A client's HEADERS become the HTTP/1.1 request head the stream's DownstreamConnection parses;
the HTTP/1.1 response head it writes back becomes a HEADERS field list. Validation happens
here, not in h2 (whose validation errors close the whole connection): a request that breaks
RFC 9113 §8.2-8.3 raises `Malformed`, which costs the client that one stream (PROTOCOL_ERROR).
"""

from __future__ import annotations

import base64
import os
import re
from typing import Final

from evenflow.proxy.http2.field_encoder import encode_field

# RFC 9113 §8.2.2: connection-specific fields make a request malformed (TE: only "trailers")
_CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
# ...and are never sent to an HTTP/2 client, nor is TE (a request field) in a response
_DROPPED_FROM_RESPONSES: Final = _CONNECTION_SPECIFIC | {b"te"}
# Trailers never carry framing, routing or connection control (RFC 9110 §6.5.1)
_NOT_IN_TRAILERS: Final = _CONNECTION_SPECIFIC | {b"te", b"content-length", b"host", b"trailer"}

_REQUEST_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# RFC 6455 §4.2.1 / RFC 8441 §5: handshake fields of HTTP/1.1 only; evenflow makes its own key
_WEBSOCKET_HANDSHAKE: Final = frozenset((b"sec-websocket-key", b"sec-websocket-accept"))

# RFC 9110 §5.6.2 tokens, lowercase only (RFC 9113 §8.2.1: uppercase makes a request malformed)
_NAME: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_METHOD: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9113 §8.2.1: no NUL, CR or LF, no leading or trailing whitespace; the other controls
# are refused too, as the HTTP/1.1 hop (llhttp) would refuse them
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$")
# a request target or authority goes into the request line or Host: no space or control
_BAD_TARGET: Final = re.compile(rb"[\x00-\x20\x7f]")


# Regular fields that passed every check, and their HTTP/1.1 line: a client's requests repeat
# most of their fields exactly, and a dict lookup is cheaper than two regular expressions.
# Only fields that set nothing (not content-length, content-type, host, te, cookie...) are
# kept. Bounded: emptied when full.
_checked_lines: Final[dict[tuple[bytes, bytes], bytes]] = {}
_CHECKED_LINES_LIMIT: Final = 4096
# ...and the :authority values that passed (a client names the same few hosts), bounded too
_checked_authorities: Final[set[bytes]] = set()
_CHECKED_AUTHORITIES_LIMIT: Final = 1024
# methods that need no check against the token grammar
_COMMON_METHODS: Final = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT")
)


class Malformed(ValueError):
    """RFC 9113 §8.1.1: a malformed request; the stream is reset with PROTOCOL_ERROR."""


class H2Request:
    """A request's HEADERS, validated, in the pieces its HTTP/1.1 head is made of."""

    __slots__ = ("method", "target", "authority", "fields", "has_length", "is_grpc", "websocket")

    def __init__(
        self, method: bytes, target: bytes, authority: bytes | None, fields: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.authority = authority  # from :authority or Host; None: neither was sent
        self.fields = fields  # b"name: value\r\n" lines, Host and TE left out
        self.has_length = False  # a content-length frames the body
        self.is_grpc = False
        # RFC 8441: an extended CONNECT for a WebSocket; it goes upstream as the HTTP/1.1
        # handshake (RFC 6455 §4.1), and what follows the backend's 101 is relayed as bytes
        self.websocket = False

    def head(self, chunked: bool) -> bytes:
        """The HTTP/1.1 request head; `chunked`: the body follows as chunks (no length)."""
        host = b"host: %s\r\n" % self.authority if self.authority is not None else b""
        if self.websocket:
            key = base64.b64encode(os.urandom(16))  # the backend proves it speaks WebSocket
            return (
                b"GET %s HTTP/1.1\r\n%s%sconnection: upgrade\r\nupgrade: websocket\r\n"
                b"sec-websocket-key: %s\r\n\r\n" % (self.target, host, self.fields, key)
            )
        framing = b"transfer-encoding: chunked\r\n" if chunked else b""
        return b"%s %s HTTP/1.1\r\n%s%s%s\r\n" % (
            self.method,
            self.target,
            host,
            self.fields,
            framing,
        )


def parse_request(headers: list[tuple[bytes, bytes]], extended_connect: bool = False) -> H2Request:
    """Validate a request's header list and split it for `H2Request.head`; Malformed if bad.

    RFC 9113 §8.3.1: pseudo-header fields first, each once, only the request ones; :method,
    :scheme and :path present (CONNECT: :authority only); :authority without userinfo; a
    Host that disagrees with :authority is malformed. §8.2.3: cookie crumbs are joined.
    RFC 8441 §4: with `extended_connect` (SETTINGS_ENABLE_CONNECT_PROTOCOL was sent), a
    CONNECT may carry :protocol, and then :scheme, :path and :authority as any request;
    evenflow relays the `websocket` protocol.
    """
    method: bytes | None = None
    scheme: bytes | None = None
    authority: bytes | None = None
    path: bytes | None = None
    protocol: bytes | None = None
    lines: list[bytes] = []
    cookies: list[bytes] = []
    host: bytes | None = None
    has_length = False
    is_grpc = False
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                raise Malformed(f"pseudo-header {_text(name)} after a regular field")
            if name == b":method" and method is None:
                method = value
            elif name == b":path" and path is None:
                path = value
            elif name == b":scheme" and scheme is None:
                scheme = value
            elif name == b":authority" and authority is None:
                authority = value
            elif name == b":protocol" and protocol is None:
                protocol = value
            elif name in _REQUEST_PSEUDO:
                raise Malformed(f"pseudo-header {_text(name)} given twice")
            else:
                raise Malformed(f"unknown pseudo-header {_text(name)}")
            continue
        regular = True
        line = _checked_lines.get((name, value))
        if line is not None:  # a field seen before (HPACK repeats them), checked then
            lines.append(line)
            continue
        if not _NAME.fullmatch(name):
            raise Malformed(f"invalid field name {_text(name)}")
        if _BAD_VALUE.search(value):
            raise Malformed(f"invalid character or whitespace in the value of {_text(name)}")
        if name in _CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {_text(name)}")
        if name == b"te":
            if value.lower() != b"trailers":
                raise Malformed("te other than trailers")
            continue  # hop-by-hop in HTTP/1.1: not forwarded
        if name == b"host":
            if host is not None:
                raise Malformed("host given twice")
            host = value
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        if name in _WEBSOCKET_HANDSHAKE:
            continue  # RFC 8441 §5: not used over HTTP/2; the HTTP/1.1 hop gets its own
        line = b"%s: %s\r\n" % (name, value)
        if name == b"content-length":
            has_length = True
        elif name == b"content-type" and value[:16].lower() == b"application/grpc":
            is_grpc = True
        else:
            if len(_checked_lines) >= _CHECKED_LINES_LIMIT:
                _checked_lines.clear()
            _checked_lines[(name, value)] = line
        lines.append(line)
    if cookies:
        lines.append(b"cookie: %s\r\n" % b"; ".join(cookies))
    if method is None or (method not in _COMMON_METHODS and not _METHOD.fullmatch(method)):
        raise Malformed("missing or invalid :method")
    if method == b"PRI":
        raise Malformed("PRI is the connection preface, not a method")  # RFC 9113 §3.4
    if authority is not None:
        if authority not in _checked_authorities:
            if not authority or b"@" in authority or _BAD_TARGET.search(authority):
                raise Malformed("invalid :authority")
            if len(_checked_authorities) >= _CHECKED_AUTHORITIES_LIMIT:
                _checked_authorities.clear()
            _checked_authorities.add(authority)
        if host is not None and host.lower() != authority.lower():
            raise Malformed("host differs from :authority")
    elif host is not None:
        if not host or _BAD_TARGET.search(host):
            raise Malformed("invalid host")
        authority = host
    if protocol is not None:
        if not extended_connect or method != b"CONNECT":
            raise Malformed(":protocol without an extended CONNECT")  # RFC 8441 §4, §3
        if protocol.lower() != b"websocket":
            raise Malformed(f"extended CONNECT for {_text(protocol)}: only websocket is relayed")
        if authority is None:
            raise Malformed("extended CONNECT without :authority")
    if method == b"CONNECT" and protocol is None:
        # RFC 9113 §8.5: only :method and :authority; evenflow does not tunnel, and the
        # HTTP/1.1 side answers such a request with an error of its own
        if authority is None or scheme is not None or path is not None:
            raise Malformed("CONNECT needs :authority only")
        target = authority
    else:
        target = path or b""
        if not scheme:
            raise Malformed("missing :scheme")
        if not target or _BAD_TARGET.search(target):
            raise Malformed("missing or invalid :path")
        if target[:1] != b"/" and not (target == b"*" and method == b"OPTIONS"):
            raise Malformed(":path must be origin-form (or * for OPTIONS)")
    if protocol is not None and has_length:
        raise Malformed("a WebSocket's extended CONNECT with content-length")
    request = H2Request(method, target, authority, b"".join(lines))
    request.has_length = has_length
    request.is_grpc = is_grpc
    request.websocket = protocol is not None
    return request


def trailer_lines(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A request's trailers, validated, for the last chunk; Malformed if bad.

    RFC 9113 §8.1: no pseudo-header fields in trailers. Fields that trailers may not carry
    (framing, Host, connection control) are dropped rather than passed to the backend.
    """
    kept = []
    for name, value in headers:
        if name[:1] == b":":
            raise Malformed("pseudo-header in trailers")
        if not _NAME.fullmatch(name):
            raise Malformed(f"invalid trailer name {_text(name)}")
        if _BAD_VALUE.search(value):
            raise Malformed(f"invalid character or whitespace in trailer {_text(name)}")
        if name not in _NOT_IN_TRAILERS:
            kept.append((name, value))
    return kept


def response_fields(
    status: int, fields: list[tuple[bytes, bytes]], keep_length: bool = True
) -> list[tuple[bytes, bytes]]:
    """The HEADERS field list for an HTTP/1.1 response head parsed by llhttp.

    Names are lowercased and connection-specific fields dropped (RFC 9113 §8.2.2). llhttp has
    refused CR, LF and NUL already; surrounding whitespace is trimmed (§8.2.1). `keep_length`
    False drops content-length (a 1xx or 204 must not carry one: RFC 9110 §8.6; on a HEADERS
    frame that ends the stream it says nothing).
    """
    out = [(b":status", b"%d" % status)]
    for name, value in fields:
        name = name.lower()
        if name in _DROPPED_FROM_RESPONSES or (name == b"content-length" and not keep_length):
            continue
        out.append((name, value.strip(b" \t")))
    return out


# What becomes of a field of the backend's response head on its way into HEADERS
_SENT: Final = 0
_LENGTH: Final = 1  # content-length: sent unless the HEADERS end the stream (or a 204)
_FRAMING: Final = 2  # transfer-encoding: not sent, but the body is framed
_DROPPED: Final = 3  # other connection-specific fields

# raw name -> raw value -> (the field's HPACK bytes, what becomes of it). A backend sends the
# same response fields again and again, and one lookup per field replaces lowercasing,
# trimming, checking and encoding it. Bounded: a table that fills up is emptied.
_encoded_fields: Final[dict[bytes, dict[bytes, tuple[bytes, int]]]] = {}
_ENCODED_NAMES_LIMIT: Final = 256
_ENCODED_VALUES_LIMIT: Final = 64  # per name: a Date or a content-length changes
_status_fields: Final[dict[int, bytes]] = {}


def encoded_response_head(
    status: int, fields: list[tuple[bytes, bytes]]
) -> tuple[list[bytes], int, bool]:
    """A final response head parsed by llhttp, as HPACK-encoded pieces for HEADERS.

    The same translation as `response_fields`, and the same wire bytes as StatelessEncoder
    makes of its result: (the pieces, starting with :status; the index of the content-length
    piece, for the caller to drop, or -1; whether a content-length or transfer-encoding
    framed the body).
    """
    status_field = _status_fields.get(status)
    if status_field is None:
        status_field = _status_fields[status] = encode_field(b":status", b"%d" % status)
    pieces = [status_field]
    length_at = -1
    framed = False
    for name, value in fields:
        by_value = _encoded_fields.get(name)
        if by_value is None:
            if len(_encoded_fields) >= _ENCODED_NAMES_LIMIT:
                _encoded_fields.clear()
            by_value = _encoded_fields[name] = {}
        known = by_value.get(value)
        if known is None:
            if len(by_value) >= _ENCODED_VALUES_LIMIT:
                by_value.clear()
            known = by_value[value] = _encoded_response_field(name, value)
        encoded, fate = known
        if fate == _SENT:
            pieces.append(encoded)
        elif fate == _LENGTH:
            if length_at < 0:
                length_at = len(pieces)
                pieces.append(encoded)  # llhttp refused differing ones; the same once
            framed = True
        elif fate == _FRAMING:
            framed = True
    return pieces, length_at, framed


def _encoded_response_field(name: bytes, value: bytes) -> tuple[bytes, int]:
    name = name.lower()
    if name == b"transfer-encoding":
        return b"", _FRAMING
    if name in _DROPPED_FROM_RESPONSES:
        return b"", _DROPPED
    encoded = encode_field(name, value.strip(b" \t"))
    return encoded, _LENGTH if name == b"content-length" else _SENT


def response_trailers(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Chunked trailer fields from the backend as HTTP/2 trailers (gRPC's grpc-status...)."""
    return [
        (name, value.strip(b" \t"))
        for name, value in ((n.lower(), v) for n, v in fields)
        if name not in _NOT_IN_TRAILERS
    ]


def _text(name: bytes) -> str:
    return repr(name[:64].decode("latin-1"))
