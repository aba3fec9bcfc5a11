"""HTTP/2 ↔ HTTP/1.1 field translation for client streams, and the validation on the way in.

Sans-IO: header lists in, HTTP/1.1 heads (parsed back with llhttp, as the stream's
DownstreamConnection parses them) or field lists out, or Malformed.
"""

from __future__ import annotations

import base64
import re

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evenflow.proxy.http1.heads import grpc_error
from evenflow.proxy.http2.downstream_fields import (
    Malformed,
    encoded_response_head,
    parse_request,
    response_fields,
    response_trailers,
    trailer_lines,
)
from evenflow.proxy.http2.field_decoder import FieldDecoder
from evenflow.proxy.http2.field_encoder import StatelessEncoder

Fields = list[tuple[bytes, bytes]]


def req(*extra: tuple[bytes, bytes], method: bytes = b"GET", path: bytes = b"/a?b=1") -> Fields:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", path),
        *extra,
    ]


class Parsed:
    """What llhttp reads back from a head (the stream's DownstreamConnection does the same)."""

    def __init__(self, head: bytes) -> None:
        self.url = b""
        self.headers: Fields = []
        self.complete = False
        parser = httptools.HttpRequestParser(self)
        parser.feed_data(head)
        self.method = parser.get_method()
        self.version = parser.get_http_version()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


# --- requests ---------------------------------------------------------------------------------


def test_a_get_becomes_an_http11_head_with_host_from_authority() -> None:
    head = parse_request(req((b"accept", b"*/*"), (b"user-agent", b"t/1"))).head(chunked=False)
    assert head == (
        b"GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\nuser-agent: t/1\r\n\r\n"
    )


def test_host_header_stands_in_for_a_missing_authority() -> None:
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h:81")]
    assert parse_request(fields).head(chunked=False) == b"GET / HTTP/1.1\r\nhost: h:81\r\n\r\n"


def test_host_equal_to_authority_is_sent_once() -> None:
    head = parse_request(req((b"host", b"EXAMPLE.com"))).head(chunked=False)
    assert head.count(b"host:") == 1


def test_cookie_crumbs_are_joined_with_semicolons() -> None:
    # RFC 9113 §8.2.3: an HTTP/1.1 hop gets one cookie field
    head = parse_request(req((b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2"))).head(False)
    assert b"cookie: a=1; b=2\r\n" in head
    assert head.count(b"cookie") == 1


def test_te_trailers_is_accepted_and_not_forwarded() -> None:
    request = parse_request(req((b"te", b"trailers"), (b"content-type", b"application/grpc")))
    assert b"te:" not in request.head(chunked=True)
    assert request.is_grpc


def test_a_body_without_length_is_announced_as_chunked() -> None:
    request = parse_request(req(method=b"POST"))
    assert not request.has_length
    assert request.head(chunked=True).endswith(b"transfer-encoding: chunked\r\n\r\n")


def test_content_length_is_kept_and_noted() -> None:
    request = parse_request(req((b"content-length", b"12"), method=b"PUT"))
    assert request.has_length
    assert b"content-length: 12\r\n" in request.head(chunked=False)


def test_a_repeated_request_reads_the_same_and_still_sets_its_flags() -> None:
    # the second time, its ordinary fields come from the checked-lines cache
    fields = req(
        (b"accept", b"*/*"),
        (b"content-type", b"application/grpc"),
        (b"content-length", b"5"),
        (b"user-agent", b"h2load"),
        method=b"POST",
    )
    first, again = parse_request(fields), parse_request(list(fields))
    assert again.head(chunked=False) == first.head(chunked=False)
    assert again.is_grpc and again.has_length


def test_a_bad_field_is_refused_every_time_it_comes() -> None:
    for _ in range(2):
        with pytest.raises(Malformed, match="invalid character"):
            parse_request(req((b"x-evil", b"a\x00b")))


def test_options_asterisk_and_connect_authority_form() -> None:
    assert parse_request(req(method=b"OPTIONS", path=b"*")).target == b"*"
    connect = parse_request([(b":method", b"CONNECT"), (b":authority", b"db:5432")])
    assert connect.head(chunked=False).startswith(b"CONNECT db:5432 HTTP/1.1\r\nhost: db:5432\r\n")


def _bare(*fields: tuple[bytes, bytes]) -> Fields:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), *fields]


# (what is wrong, the header list, what the refusal says)
MALFORMED: list[tuple[str, Fields, str]] = [
    ("uppercase name", req((b"X-Up", b"1")), "invalid field name"),
    ("CR in value", req((b"x", b"a\rb")), "invalid character"),
    ("LF in value", req((b"x", b"a\nb")), "invalid character"),
    ("NUL in value", req((b"x", b"a\x00b")), "invalid character"),
    ("other control in value", req((b"x", b"a\x01b")), "invalid character"),
    ("leading space", req((b"x", b" a")), "whitespace"),
    ("trailing tab", req((b"x", b"a\t")), "whitespace"),
    ("space in name", req((b"x y", b"1")), "invalid field name"),
    ("colon in name", req((b"x:y", b"1")), "invalid field name"),
    ("empty name", req((b"", b"1")), "invalid field name"),
    ("connection", req((b"connection", b"close")), "connection-specific"),
    ("keep-alive", req((b"keep-alive", b"5")), "connection-specific"),
    ("proxy-connection", req((b"proxy-connection", b"close")), "connection-specific"),
    ("transfer-encoding", req((b"transfer-encoding", b"chunked")), "connection-specific"),
    ("upgrade", req((b"upgrade", b"websocket")), "connection-specific"),
    ("te other than trailers", req((b"te", b"gzip")), "te other than trailers"),
    ("pseudo after regular", [(b":method", b"GET"), (b"x", b"1"), (b":path", b"/")], "after"),
    ("unknown pseudo", req((b":tenant", b"a")), "unknown pseudo-header"),
    ("protocol without the setting", req((b":protocol", b"websocket")), "extended CONNECT"),
    ("response pseudo", req((b":status", b"200")), "unknown pseudo-header"),
    ("repeated pseudo", [(b":path", b"/x"), *req()], "given twice"),
    ("no method", [(b":scheme", b"http"), (b":path", b"/")], ":method"),
    ("no scheme", [(b":method", b"GET"), (b":path", b"/")], ":scheme"),
    ("no path", [(b":method", b"GET"), (b":scheme", b"http")], ":path"),
    ("empty path", req(path=b""), ":path"),
    ("relative path", req(path=b"a/b"), "origin-form"),
    ("absolute path", req(path=b"http://x/"), "origin-form"),
    ("space in path", req(path=b"/a b"), ":path"),
    ("method with space", req(method=b"GET /x"), ":method"),
    ("PRI method", req(method=b"PRI"), "preface"),
    ("userinfo in authority", _bare((b":authority", b"u@h")), "invalid :authority"),
    ("host differs from authority", req((b"host", b"other.example")), "differs"),
    ("host twice", _bare((b"host", b"a"), (b"host", b"a")), "host given twice"),
    (
        "CONNECT with path",
        [(b":method", b"CONNECT"), (b":authority", b"h:1"), (b":path", b"/")],
        "CONNECT",
    ),
    ("empty header block", [], ":method"),
]


def _websocket(*fields: tuple[bytes, bytes], protocol: bytes = b"websocket") -> Fields:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", protocol),
        (b":scheme", b"https"),
        (b":path", b"/chat?room=1"),
        (b":authority", b"shop.example"),
        (b"sec-websocket-version", b"13"),
        *fields,
    ]


def test_an_extended_connect_becomes_the_http11_websocket_handshake() -> None:
    # RFC 8441 §5: no Sec-WebSocket-Key over HTTP/2; the backend gets a fresh one of its own
    request = parse_request(
        _websocket((b"sec-websocket-protocol", b"chat"), (b"sec-websocket-key", b"bogus")),
        extended_connect=True,
    )
    assert request.websocket and request.method == b"CONNECT"
    head = request.head(chunked=False)
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /chat?room=1 HTTP/1.1"
    assert b"host: shop.example" in lines
    assert b"connection: upgrade" in lines and b"upgrade: websocket" in lines
    assert b"sec-websocket-version: 13" in lines and b"sec-websocket-protocol: chat" in lines
    [key] = [line for line in lines if line.startswith(b"sec-websocket-key: ")]
    assert len(base64.b64decode(key.split(b": ")[1])) == 16  # RFC 6455 §4.1: 16 random bytes
    assert head.endswith(b"\r\n\r\n") and b"transfer-encoding" not in head
    assert request.head(chunked=False) != head  # a new key each time


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (_websocket(protocol=b"connect-udp"), "only websocket"),
        ([f for f in _websocket() if f[0] != b":authority"], ":authority"),
        ([f for f in _websocket() if f[0] != b":path"], ":path"),
        ([f for f in _websocket() if f[0] != b":scheme"], ":scheme"),
        (_websocket((b"content-length", b"3")), "content-length"),
        (
            [(b":method", b"GET"), (b":protocol", b"websocket"), *_websocket()[2:]],
            "extended CONNECT",
        ),
    ],
    ids=["other protocol", "no authority", "no path", "no scheme", "length", "not CONNECT"],
)
def test_malformed_extended_connects(fields: Fields, says: str) -> None:
    with pytest.raises(Malformed, match=re.escape(says)):
        parse_request(fields, extended_connect=True)


@pytest.mark.parametrize(
    ("fields", "says"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_requests_are_refused(fields: Fields, says: str) -> None:
    with pytest.raises(Malformed, match=re.escape(says)):
        parse_request(fields)


_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~", min_size=1, max_size=12)
_value = st.binary(max_size=30).filter(
    lambda v: not any(b < 0x20 and b != 9 or b == 0x7F for b in v) and v.strip(b" \t") == v
)
_path = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~/%?=&", max_size=30).map(
    lambda p: ("/" + p).encode()
)


@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]),
    path=_path,
    fields=st.lists(st.tuples(_token.map(str.encode), _value), max_size=8),
)
def test_every_accepted_request_reads_back_the_same_through_llhttp(
    method: bytes, path: bytes, fields: Fields
) -> None:
    fields = [
        (n, v)
        for n, v in fields
        if n not in (b"host", b"cookie", b"te", b"content-length", b"transfer-encoding")
        and n not in (b"connection", b"keep-alive", b"proxy-connection", b"upgrade")
    ]
    request = parse_request(req(*fields, method=method, path=path))
    parsed = Parsed(request.head(chunked=method != b"GET"))
    assert parsed.complete
    assert (parsed.method, parsed.url, parsed.version) == (method, path, "1.1")
    sent = [(b"host", b"example.com"), *fields]
    if method != b"GET":
        sent.append((b"transfer-encoding", b"chunked"))
    assert parsed.headers == sent


def test_trailers_refuse_pseudo_headers_and_drop_framing_fields() -> None:
    kept = trailer_lines([(b"grpc-status", b"0"), (b"content-length", b"3"), (b"host", b"x")])
    assert kept == [(b"grpc-status", b"0")]
    with pytest.raises(Malformed):
        trailer_lines([(b":path", b"/")])
    with pytest.raises(Malformed):
        trailer_lines([(b"x", b"a\r\nb")])
    with pytest.raises(Malformed):
        trailer_lines([(b"X", b"1")])


# --- responses --------------------------------------------------------------------------------


def test_response_fields_are_lowercased_and_connection_specific_ones_dropped() -> None:
    fields = [
        (b"Content-Type", b"text/plain"),
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"h2c"),
        (b"Proxy-Connection", b"close"),
        (b"TE", b"trailers"),
        (b"X-Thing", b"a b  "),
        (b"Content-Length", b"5"),
        (b"Trailer", b"grpc-status"),
    ]
    assert response_fields(200, fields) == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"x-thing", b"a b"),
        (b"content-length", b"5"),
        (b"trailer", b"grpc-status"),
    ]


def test_a_204_or_1xx_carries_no_content_length() -> None:
    assert response_fields(204, [(b"content-length", b"0")], keep_length=False) == [
        (b":status", b"204")
    ]


_RESPONSE_NAMES = [
    b"Content-Type",
    b"content-length",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"keep-alive",
    b"TE",
    b"Server",
    b"date",
    b"Set-Cookie",
    b"x-custom",
    b"X-Custom",
    b"trailer",
]


@given(
    st.sampled_from([200, 204, 301, 404, 503]),
    st.lists(
        st.tuples(
            st.sampled_from(_RESPONSE_NAMES),
            st.sampled_from([b"5", b"text/html", b" padded \t", b"chunked", b"", b"x" * 40]),
        ),
        max_size=8,
    ),
)
def test_the_encoded_response_head_is_response_fields_encoded(status: int, fields: Fields) -> None:
    """Differential: the cached, pre-encoded head carries exactly what response_fields makes
    (one content-length, where the first one was), and decodes to it."""
    pieces, length_at, framed = encoded_response_head(status, fields)
    expected = response_fields(status, fields)
    lengths = [i for i, (name, _) in enumerate(expected) if name == b"content-length"]
    for extra in reversed(lengths[1:]):
        del expected[extra]
    assert length_at == (lengths[0] if lengths else -1)
    assert framed == any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in fields)
    assert b"".join(pieces) == StatelessEncoder().encode(expected)
    assert FieldDecoder().decode(b"".join(pieces)) == expected


def test_response_trailers_keep_grpc_status_and_drop_framing() -> None:
    trailers = [(b"Grpc-Status", b"0"), (b"grpc-message", b"ok "), (b"Content-Length", b"1")]
    assert response_trailers(trailers) == [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]


def test_grpc_error_is_an_empty_200_with_the_status_in_headers() -> None:
    raw = grpc_error(14, "pool a: no backend 100% down ünïcode\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"grpc-status: 14\r\n" in raw
    assert b"content-type: application/grpc\r\n" in raw
    assert b"content-length: 0\r\n" in raw
    # PROTOCOL-HTTP2.md: percent-encoded UTF-8; printable ASCII except % unchanged
    assert b"grpc-message: pool a: no backend 100%25 down %C3%BCn%C3%AFcode%0A\r\n" in raw
    assert raw.endswith(b"\r\n\r\n")
    assert b"connection: close" in grpc_error(12, "x", close=True)
