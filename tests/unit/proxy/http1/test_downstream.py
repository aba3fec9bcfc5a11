"""The client side without a socket: the request ids it makes up, how it reads header names."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from evenflow.config.load import load_data
from evenflow.core.errors import BadRequest
from evenflow.proxy.http1.downstream import (
    _LOWERCASE,
    _ORDINARY_FIELDS,
    _REQUEST_SPECIAL,
    DownstreamConnection,
    HttpListenerContext,
)
from evenflow.runtime.controller import Controller


def listener_context() -> HttpListenerContext:
    config = load_data(
        {
            "listeners": [{"name": "public", "bind": "127.0.0.1:8080", "pool": "web"}],
            "pools": {"web": {"backends": ["10.0.0.1:8000"]}},
        }
    ).config
    return HttpListenerContext("public", Controller(config), loop=None, access_log=None)  # type: ignore[arg-type]


def test_request_ids_are_a_random_prefix_and_a_counter_in_hex() -> None:
    ctx = listener_context()
    ids = [ctx.next_request_id() for _ in range(0x10101)]  # past 0xff, 0xfff, 0xffff
    prefix = ids[0].removesuffix(b"1")
    assert re.fullmatch(rb"[0-9a-f]{12}-", prefix)
    assert ids == [prefix + b"%x" % counter for counter in range(1, 0x10102)]
    assert listener_context().next_request_id() != ids[0]  # another listener, another prefix


# -- header names: the lookup of usual spellings against lower() -------------------------------

KNOWN_NAMES = sorted({b"host", *_ORDINARY_FIELDS, *_REQUEST_SPECIAL})


def test_every_usual_spelling_stands_for_its_lowercase_name() -> None:
    assert _LOWERCASE  # (a table that lost its entries would pass the loop below)
    for spelling, lname in _LOWERCASE.items():
        assert spelling.lower() == lname
        assert lname in KNOWN_NAMES
    for lname in (*_ORDINARY_FIELDS, *_REQUEST_SPECIAL):
        assert _LOWERCASE[lname] is lname  # the set's own object: its hash is kept
    assert _LOWERCASE[b"User-Agent"] == b"user-agent"
    assert _LOWERCASE[b"X-Request-ID"] == b"x-request-id"
    assert _LOWERCASE[b"TE"] == b"te"


def head_state(headers: list[tuple[bytes, bytes]]) -> tuple[object, ...]:
    """What on_header recorded and noticed for `headers`, or the error it raised."""
    conn = DownstreamConnection(listener_context())
    conn._data = b"GET / HTTP/1.1\r\n"
    conn.on_message_begin()
    try:
        for name, value in headers:
            conn.on_header(name, value)
    except BadRequest as error:
        return ("refused", error.detail)
    return (
        conn._headers,
        conn._host,
        conn._special,
        conn._content_length,
        conn._request_id,
        conn._traceparent,
        conn._upgrade,
    )


NAME = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    st.sampled_from(sorted(_LOWERCASE)),
    st.sampled_from([b"content_length", b"transfer-encodin", b"proxy-x", b"x-other"]),
)


@st.composite
def spelled(draw: st.DrawFn) -> bytes:
    """A name in any mix of cases."""
    name = draw(NAME)
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes(
        c ^ 0x20 if flip and chr(c).isalpha() else c for c, flip in zip(name, flips, strict=True)
    )


@given(st.lists(st.tuples(spelled(), st.sampled_from([b"1", b"chunked", b"websocket", b""]))))
def test_a_name_in_any_case_is_read_as_its_lowercase_spelling(
    headers: list[tuple[bytes, bytes]],
) -> None:
    lowered = [(name.lower(), value) for name, value in headers]
    assert head_state(headers) == head_state(lowered)
