"""Cookie affinity: opaque, signed values that any node with the secret honours, and the
Set-Cookie line evenflow sends. Read back with the standard library's cookie parser."""

from __future__ import annotations

import base64
import re
from http.cookies import SimpleCookie
from typing import Any

import pytest

from evenflow.config.affinity import CookieSticky
from evenflow.core.backend import BackendState
from evenflow.sticky.cookie import CookieAffinity, cookie_token

SECRET = b"s3cret-shared-by-every-node"
ADDRESSES = ["10.0.0.1:8000", "10.0.0.2:8000", "[2001:db8::7]:8443"]


def members(pool: str = "web") -> list[BackendState]:
    return [BackendState(pool, address) for address in ADDRESSES]


def sticky(**fields: Any) -> CookieSticky:
    return CookieSticky.model_validate(fields)


def affinity(
    secret: bytes = SECRET, pool: str = "web", **fields: Any
) -> tuple[CookieAffinity, list[BackendState]]:
    """A pool's cookie affinity (one node's), and that node's backend objects."""
    backends = members(pool)
    return CookieAffinity(pool, sticky(**fields), secret, backends), backends


def issued(cookie: CookieAffinity, backend: BackendState) -> str:
    """The value of the Set-Cookie line that pins `backend`."""
    line = cookie.set_cookie(backend).decode("latin-1")
    assert line.endswith("\r\n")
    name, _, value = line[len("set-cookie: ") :].partition("=")
    assert name == cookie.name
    return value.partition(";")[0]


def test_the_value_names_no_address_nor_port() -> None:
    cookie, backends = affinity()
    for backend in backends:
        value = issued(cookie, backend)
        line = cookie.set_cookie(backend).decode()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", value), value  # 128 bits, URL-safe
        host = backend.host.strip("[]")
        for part in (host, str(backend.port), backend.address):
            assert part not in line
        decoded = base64.urlsafe_b64decode(value + "==")
        assert host.encode() not in decoded and str(backend.port).encode() not in decoded


def test_tokens_differ_between_backends_and_between_pools() -> None:
    tokens = {cookie_token(SECRET, "web", a) for a in ADDRESSES}
    assert len(tokens) == len(ADDRESSES)
    # a cookie of one pool pins nothing in another pool with the same backend
    other, _ = affinity(pool="api")
    for token in tokens:
        assert other.pinned(token) is None


def test_the_same_secret_gives_the_same_values_on_every_instance() -> None:
    # two nodes (or a restart): separate objects, same secret, same pool and addresses
    (node_a, backends_a), (node_b, backends_b) = affinity(), affinity()
    by_address = {b.address: b for b in backends_b}
    for backend in backends_a:
        value = issued(node_a, backend)
        assert value == cookie_token(SECRET, "web", backend.address)
        pinned = node_b.pinned(value)
        assert pinned is by_address[backend.address]
        assert issued(node_b, pinned) == value


def test_another_secret_gives_other_values_and_honours_none_of_ours() -> None:
    (ours, backends), (theirs, their_backends) = affinity(), affinity(secret=b"another secret")
    for backend, same in zip(backends, their_backends, strict=True):
        value = issued(ours, backend)
        assert issued(theirs, same) != value
        assert theirs.pinned(value) is None


def test_a_forged_or_tampered_value_maps_to_nothing() -> None:
    cookie, backends = affinity()
    good = issued(cookie, backends[0])
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    forged = [
        None,
        "",
        flipped,
        good[:-1],
        good + "x",
        good.upper() if good.upper() != good else good.lower(),
        " " + good,
        "10.0.0.1:8000",
        base64.urlsafe_b64encode(b"10.0.0.1:8000").decode(),
        "A" * 22,
        "\x00" * 22,
    ]
    for value in forged:
        assert cookie.pinned(value) is None, value
    assert cookie.pinned(good) is backends[0]  # the control: the untouched value pins


def test_set_cookie_with_every_attribute() -> None:
    cookie, backends = affinity(
        name="SRV",
        ttl="1h",
        path="/app",
        domain="example.com",
        secure=True,
        http_only=True,
        same_site="Strict",
    )
    backend = backends[1]
    line = cookie.set_cookie(backend)
    value = cookie_token(SECRET, "web", backend.address)
    assert (
        line
        == (
            f"set-cookie: SRV={value}; Path=/app; Max-Age=3600; Domain=example.com; Secure; "
            "HttpOnly; SameSite=Strict\r\n"
        ).encode()
    )
    parsed = SimpleCookie()
    parsed.load(line.decode()[len("set-cookie: ") :].strip())
    morsel = parsed["SRV"]
    assert morsel.value == value
    assert (morsel["path"], morsel["max-age"], morsel["domain"]) == ("/app", "3600", "example.com")
    assert morsel["secure"] is True and morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"


def test_set_cookie_defaults_a_session_cookie_for_every_path() -> None:
    cookie, backends = affinity()
    backend = backends[0]
    line = cookie.set_cookie(backend).decode()
    value = cookie_token(SECRET, "web", backend.address)
    assert line == f"set-cookie: EF_AFFINITY={value}; Path=/; HttpOnly; SameSite=Lax\r\n"
    for absent in ("Max-Age", "Expires", "Domain", "Secure"):
        assert absent not in line


@pytest.mark.parametrize(
    ("fields", "attributes"),
    [
        ({"http_only": False}, "Path=/; SameSite=Lax"),
        ({"same_site": None}, "Path=/; HttpOnly"),
        ({"same_site": "None", "secure": True}, "Path=/; Secure; HttpOnly; SameSite=None"),
        ({"ttl": "90s", "http_only": False, "same_site": None}, "Path=/; Max-Age=90"),
    ],
)
def test_set_cookie_attributes_follow_the_config(fields: dict[str, Any], attributes: str) -> None:
    cookie, backends = affinity(**fields)
    backend = backends[2]
    value = cookie_token(SECRET, "web", backend.address)
    assert cookie.set_cookie(backend).decode() == (
        f"set-cookie: EF_AFFINITY={value}; {attributes}\r\n"
    )


def test_same_site_none_without_secure_is_refused() -> None:
    with pytest.raises(ValueError, match="same_site None needs secure"):
        sticky(same_site="None")
