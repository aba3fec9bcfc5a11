"""RequestHead's lazy views of the raw request: the host as routes compare it."""

from __future__ import annotations

import pytest

from evenflow.core import request
from evenflow.core.request import RequestHead


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        (b"Shop.Example.COM:8443", "shop.example.com"),
        (b" api.example ", "api.example"),
        (b"[::1]:8080", "[::1]"),
        (b"127.0.0.1", "127.0.0.1"),
    ],
)
def test_the_host_is_lowercase_without_port(raw: bytes, host: str) -> None:
    assert RequestHead("GET", b"/", raw, []).host == host
    assert RequestHead("GET", b"/", raw, []).host == host  # the second time from the cache


def test_the_cache_of_normalized_hosts_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request, "_normalized", {})
    monkeypatch.setattr(request, "_MAX_NORMALIZED", 8)
    for n in range(100):  # a client inventing names cannot grow it without bound
        assert RequestHead("GET", b"/", b"H%d.example" % n, []).host == f"h{n}.example"
    assert len(request._normalized) <= 8


def test_names_taking_turns_each_read_as_their_own() -> None:
    # the last name is kept to skip the table: a different one must not be read as it
    for raw, host in [(b"A.example", "a.example"), (b"b.example:81", "b.example")] * 2:
        assert RequestHead("GET", b"/", raw, []).host == host


def test_a_host_given_as_text_is_normalized_at_once() -> None:
    assert RequestHead("GET", "/", "WWW.Example:80", []).host == "www.example"
