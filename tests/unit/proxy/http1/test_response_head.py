"""The response head analysis: framing and hop-by-hop flags, against the dict-based reading it
replaced (the oracle)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import httptools
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from evenflow.proxy.http1.response_head import (
    CHUNKED,
    CONNECTION_NAMES_OTHERS,
    HAS_LENGTH,
    HOP_SEEN,
    KEEP_ALIVE_ONLY,
    _analyze_fields,
    _digits,
    analyze,
    analyze_fields,
    keeps_connection,
    read_head,
    special_fields,
    status_code,
)

# the scan analyze() used before it read lines itself: the oracle for what it must find
_ORACLE_FIELD = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|keep-alive|proxy-[^:]*|te|trailer|upgrade)"
    rb":[ \t]*([^\r]*)"
)


def oracle(raw: bytes) -> tuple[int, int]:
    found = _ORACLE_FIELD.findall(raw.lower())
    fields = dict(found)
    if len(fields) == len(found) and fields.keys() <= {b"content-length", b"connection"}:
        connection = fields.get(b"connection")
        flags = 0
        if connection is not None:
            if connection.rstrip() != b"keep-alive":
                return _analyze_fields(found)
            flags = KEEP_ALIVE_ONLY
        length = fields.get(b"content-length")
        if length is None:
            return flags, -1
        return flags | HAS_LENGTH, int(length)
    return _analyze_fields(found)


def head(*fields: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode()


NGINX = head(
    "Server: nginx/1.22.1",
    "Date: Thu, 26 Nov 2026 18:55:01 GMT",
    "Content-Type: text/plain",
    "Content-Length: 1024",
    "Last-Modified: Thu, 26 Nov 2026 18:48:51 GMT",
    "Connection: keep-alive",
    'ETag: "6b087f13-400"',
    "Accept-Ranges: bytes",
)


def test_a_common_head_is_a_length_and_keep_alive() -> None:
    assert analyze(NGINX) == (HAS_LENGTH | KEEP_ALIVE_ONLY, 1024)
    assert special_fields(NGINX) == [(b"content-length", b"1024"), (b"connection", b"keep-alive")]


def test_chunked_overrides_a_length_and_hop_by_hop_fields_are_seen() -> None:
    raw = head("Content-Length: 10", "Transfer-Encoding: gzip, Chunked", "Keep-Alive: timeout=5")
    assert analyze(raw) == (CHUNKED | HOP_SEEN, -1)


def test_connection_naming_another_field_asks_for_a_rebuild() -> None:
    flags, length = analyze(head("Connection: close, X-Secret", "Content-Length: 0"))
    assert flags & CONNECTION_NAMES_OTHERS and flags & HOP_SEEN and length == 0


def test_a_field_whose_name_only_starts_like_one_is_ignored() -> None:
    raw = head("Content-Lengthy: 5", "Tex: 1", "Upgrades: no", "Content-Length: 7")
    assert analyze(raw) == (HAS_LENGTH, 7)
    assert analyze(head("Proxy-Status: x")) == (HOP_SEEN, -1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (NGINX.replace(b"Content-Length", b"CONTENT-LENGTH"), (HAS_LENGTH | KEEP_ALIVE_ONLY, 1024)),
        (head("content-length: 5", "connection: keep-alive"), (HAS_LENGTH | KEEP_ALIVE_ONLY, 5)),
        (head("Content-Length: 5", "Connection: Keep-Alive"), (HAS_LENGTH | KEEP_ALIVE_ONLY, 5)),
        (head("Content-Length: 5", "Connection: close"), (HAS_LENGTH | HOP_SEEN, 5)),
        (head("Content-Length: 5", "Content-Length: 5"), (HAS_LENGTH, 5)),
        (head("Cache-Control: no-cache", "Pragma: no-cache"), (0, -1)),
        (b"\r\n" + head("Content-Length: 5"), (HAS_LENGTH, 5)),  # llhttp skips a leading CRLF
    ],
)
def test_heads_read_line_by_line_or_by_the_general_reading_agree(
    raw: bytes, expected: tuple[int, int]
) -> None:
    assert analyze(raw) == oracle(raw) == expected


NAMES = st.sampled_from(
    [
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-",
        "TE",
        "Trailer",
        "Upgrade",
        "Content-Type",
        "Content-Lengthy",
        "Cache-Control",
        "Pragma",
        "Tex",
        "Connections",
        "Server",
        "X-Te",
        "Date",
        "Upgrade-Insecure",
        "Cache-Control",
        "Keep",
        "P",
    ]
)
VALUES = st.sampled_from(
    [
        "12",
        "0",
        " 12 ",
        "keep-alive",
        "Keep-Alive ",
        "close",
        "chunked",
        "gzip, chunked",
        "chunked, gzip",
        "close, x-secret",
        "keep-alive, close",
        "",
        "\tgzip",
        "websocket",
    ]
)
CASES = st.sampled_from([str.lower, str.upper, str.title, str])


LENGTHS = st.sampled_from(["0", "12", "12 ", "1024\t"])  # what llhttp lets through


@given(
    st.lists(
        st.tuples(NAMES, CASES, VALUES, LENGTHS, st.sampled_from(["", " ", "\t", "  "])),
        max_size=8,
    )
)
def test_it_agrees_with_the_regular_expression_it_replaced(
    fields: list[tuple[str, Callable[[str], str], str, str, str]],
) -> None:
    raw = head(
        *(
            f"{case(name)}:{space}{length if name == 'Content-Length' else value}"
            for name, case, value, length, space in fields
        )
    )
    assert analyze(raw) == oracle(raw)


@given(st.binary() | st.text(alphabet="0123456789 \t+_-x").map(str.encode))
def test_digits_read_what_int_reads_or_give_up(value: bytes) -> None:
    got = _digits(b"content-length:" + value, 15)
    if re.fullmatch(rb"[ \t]*[0-9]+[ \t]*", value):
        assert got == int(value)  # what llhttp lets through: always read
    else:
        assert got == -1  # anything else goes to the general reading, and its int()


def llhttp_reading(raw: bytes) -> tuple[int, bool] | None:
    """(status code, should_keep_alive()) as llhttp has them once it read the head `raw`; None
    when it refuses the head."""
    seen: list[tuple[int, bool]] = []

    class Callbacks:
        def on_headers_complete(self) -> None:
            seen.append((parser.get_status_code(), parser.should_keep_alive()))

    parser = httptools.HttpResponseParser(Callbacks())
    with contextlib.suppress(httptools.HttpParserError):
        parser.feed_data(raw)
    return seen[0] if seen else None


@pytest.mark.parametrize(
    ("raw", "keeps"),
    [
        (NGINX, True),
        (head("Content-Length: 5"), True),
        (head("Content-Length: 5", "Connection: close"), False),
        (head("Content-Length: 5", "Connection: keep-alive, close"), False),
        (head("Transfer-Encoding: chunked"), False),  # llhttp is asked: it says yes
        (head("Cache-Control: no-cache"), False),  # until close
        (NGINX.replace(b"HTTP/1.1", b"HTTP/1.0"), False),  # llhttp is asked: it says yes
    ],
)
def test_a_head_shows_the_connection_kept_only_where_llhttp_agrees(raw: bytes, keeps: bool) -> None:
    assert keeps_connection(raw, analyze(raw)[0]) is keeps
    reading = llhttp_reading(raw)
    assert reading is not None and (reading[1] or not keeps)


def test_the_status_code_is_read_from_the_status_line() -> None:
    assert status_code(NGINX) == 200
    assert status_code(b"HTTP/1.1 404\r\n\r\n") == 404
    assert status_code(b"\r\n" + NGINX) == -1  # llhttp skips a leading CRLF: it is asked


def test_llhttp_refuses_a_folded_line_that_could_hide_a_close() -> None:
    """keeps_connection() reads no continuation line: llhttp must refuse them (obs-fold,
    RFC 9112 §5.2), or "Connection: keep-alive" could go on with ", close"."""
    assert llhttp_reading(head("Content-Length: 0", "Connection: keep-alive", " close")) is None
    assert llhttp_reading(head("Content-Length: 0", "Connection: keep-alive", "\tclose")) is None


@given(
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "\r\nHTTP/1.1"]),
    st.integers(100, 999),
    st.sampled_from([" OK", " Not Found", " ", ""]),
    st.lists(
        st.tuples(NAMES, CASES, VALUES, LENGTHS, st.sampled_from(["", " ", "\t"])),
        max_size=6,
    ),
)
def test_status_and_kept_connection_agree_with_llhttp(
    version: str,
    status: int,
    reason: str,
    fields: list[tuple[str, Callable[[str], str], str, str, str]],
) -> None:
    raw = head(
        *(
            f"{case(name)}:{space}{length if name == 'Content-Length' else value}"
            for name, case, value, length, space in fields
        )
    ).replace(b"HTTP/1.1 200 OK", f"{version} {status}{reason}".encode(), 1)
    reading = llhttp_reading(raw)
    assume(reading is not None)  # a head llhttp refuses never reaches analyze()
    assert reading is not None
    llhttp_status, llhttp_keeps = reading
    assert status_code(raw) == (-1 if raw.startswith(b"\r\n") else llhttp_status)
    if keeps_connection(raw, analyze(raw)[0]):
        assert llhttp_keeps


# -- read_head: the head's end and analysis from the lines of a window of the read -------------


def read_in_window(data: bytes, window: int) -> tuple[int, int, int]:
    """What UpstreamConnection.on_headers_complete takes from the first `window` bytes."""
    size, flags, length = read_head(data[:window].split(b"\r\n"))
    if size >= 0 and flags < 0:
        flags, length = analyze_fields(data[:size])
    return size, flags, length


def test_a_head_is_read_from_a_window_that_holds_it_or_not_at_all() -> None:
    data = NGINX + b"x" * 1024
    assert read_in_window(data, len(data)) == (len(NGINX), HAS_LENGTH | KEEP_ALIVE_ONLY, 1024)
    assert read_in_window(data, len(NGINX)) == (len(NGINX), HAS_LENGTH | KEEP_ALIVE_ONLY, 1024)
    assert read_in_window(data, len(NGINX) - 1)[0] == -1  # the blank line's LF is outside
    assert read_in_window(data, 10)[0] == -1
    chunked = head("Transfer-Encoding: chunked")  # not the common head: the general reading
    data = chunked + b"5\r\nhello\r\n0\r\n\r\n"
    assert read_in_window(data, 512) == (len(chunked), CHUNKED, -1)


BODIES = st.lists(st.sampled_from([b"x", b"\r\n", b"\r", b"\n", b"HTTP/1.1 200 OK", b""])).map(
    b"".join
)


@given(
    st.lists(
        st.tuples(NAMES, CASES, VALUES, LENGTHS, st.sampled_from(["", " ", "\t", "  "])),
        max_size=8,
    ),
    BODIES,
    st.integers(min_value=0, max_value=600),
)
def test_a_head_read_from_a_window_is_the_one_searched_for_and_analyzed(
    fields: list[tuple[str, Callable[[str], str], str, str, str]], body: bytes, window: int
) -> None:
    raw = head(
        *(
            f"{case(name)}:{space}{length if name == 'Content-Length' else value}"
            for name, case, value, length, space in fields
        )
    )
    data = raw + body
    size, flags, length = read_in_window(data, window)
    if size < 0:
        assert window < len(raw)  # (then the head is searched for, and analyze() reads it)
        return
    assert size == data.find(b"\r\n\r\n") + 4 == len(raw)
    assert (flags, length) == analyze(raw)
