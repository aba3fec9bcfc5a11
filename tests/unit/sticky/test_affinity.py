"""A pool's affinity at pick time: hash keys read from requests, sticky hit, miss and re-pin,
draining backends, and the keys the hot-key view shows (secrets as hashes)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from evenflow.balancing.base import Balancer, PickContext, build
from evenflow.config.affinity import HashKey
from evenflow.config.model import Pool
from evenflow.core.backend import Admin, BackendState
from evenflow.core.pool import usable as usable_of
from evenflow.core.request import RequestHead
from evenflow.sticky.affinity import HIT, MISS, REPIN, PoolAffinity, PoolTracking, key_extractor
from evenflow.sticky.cookie import cookie_token

SECRET = b"k" * 32
CLIENT = "198.51.100.7"
ADDRESSES = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]


def request(
    target: str = "/", headers: dict[str, str] | None = None, client_ip: str = CLIENT
) -> RequestHead:
    pairs = [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return RequestHead("GET", target, "example.com", pairs, client_ip)


# --- hash keys --------------------------------------------------------------------------------

FULL = request(
    "/users/42/cart?tenant=acme&x=1",
    {"X-User-Id": "u-1", "Cookie": "theme=dark; session=abc123"},
)


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("header", "x-user-id", b"u-1"),
        ("cookie", "session", b"abc123"),
        ("query", "tenant", b"acme"),
        ("path", "", b"/users/42/cart"),
        ("client_ip", "", CLIENT.encode()),
    ],
)
@pytest.mark.parametrize("missing", ["client_ip", "round_robin"])
def test_every_key_kind_reads_its_part_of_the_request(
    kind: str, name: str, expected: bytes, missing: str
) -> None:
    assert key_extractor(HashKey(kind, name), missing)(FULL) == expected


def test_header_names_match_whatever_their_case_in_the_config() -> None:
    assert key_extractor(HashKey("header", "X-User-Id"), "client_ip")(FULL) == b"u-1"


def test_no_spec_keys_on_the_client_address() -> None:
    assert key_extractor(None, "round_robin")(FULL) == CLIENT.encode()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("header", "x-user-id"), ("cookie", "session"), ("query", "tenant")],
)
def test_a_missing_key_falls_back_as_configured(kind: str, name: str) -> None:
    bare = request("/plain?other=1", {"Cookie": "theme=dark", "X-Other": "1"})
    empty = request(
        f"/plain?{name}=", {"Cookie": f"{name}=", name if kind == "header" else "x-pad": ""}
    )
    for req in (bare, empty):  # absent, or present but empty: no key either way
        assert key_extractor(HashKey(kind, name), "client_ip")(req) == CLIENT.encode()
        assert key_extractor(HashKey(kind, name), "round_robin")(req) is None


def test_non_ascii_keys_are_hashed_as_bytes() -> None:
    req = request("/caf%C3%A9?name=caf\u00e9")
    assert key_extractor(HashKey("query", "name"), "round_robin")(req) == "caf\u00e9".encode(
        "latin-1"
    )
    assert key_extractor(HashKey("path"), "round_robin")(req) == b"/caf%C3%A9"


# --- sticky: hit, miss, re-pin ----------------------------------------------------------------


def pool_config(**fields: Any) -> Pool:
    return Pool.model_validate({"backends": ADDRESSES, **fields})


class Setup:
    """One pool's members, config and tracking. `pick` uses what a snapshot would hold, rebuilt
    (as the control plane does) whenever the usable set changed since the last pick."""

    def __init__(self, **fields: Any) -> None:
        self.config = pool_config(**fields)
        self.members = [BackendState("web", a) for a in ADDRESSES]
        self.tracking = PoolTracking(self.config)
        self._built: tuple[tuple[int, ...], PoolAffinity, Balancer] | None = None

    def affinity(self) -> tuple[PoolAffinity, Balancer]:
        usable = usable_of(self.members)
        signature = tuple(map(id, usable))
        if self._built is None or self._built[0] != signature:
            hashing = self.config.algorithm in ("consistent_hash", "maglev")
            affinity = PoolAffinity(
                "web", self.config, usable, self.members, self.tracking, SECRET, hashing
            )
            self._built = (signature, affinity, build(self.config.algorithm, usable))
        return self._built[1], self._built[2]

    def pick(
        self, req: RequestHead | None = None, client_ip: str = CLIENT
    ) -> tuple[BackendState | None, BackendState | None, str]:
        affinity, balancer = self.affinity()
        return affinity.pick(balancer, PickContext(client_ip), req or request(), client_ip)


def with_cookie(backend: BackendState) -> RequestHead:
    token = cookie_token(SECRET, "web", backend.address)
    return request(headers={"Cookie": f"EF_AFFINITY={token}"})


COOKIE = {"sticky": {"cookie": {"secret": "x"}}}


def test_cookie_miss_hit_and_repin_with_their_counters() -> None:
    setup = Setup(**COOKIE)
    backend, pinned, outcome = setup.pick()
    assert (pinned, outcome) == (None, MISS)
    assert backend is not None
    # round robin would move on; the cookie keeps the client where it is
    for _ in range(5):
        assert setup.pick(with_cookie(backend)) == (backend, backend, HIT)
    backend.admin = Admin.DISABLED
    moved, pinned, outcome = setup.pick(with_cookie(backend))
    assert (pinned, outcome) == (backend, REPIN)
    assert moved is not None and moved is not backend
    t = setup.tracking
    assert (t.sticky_misses, t.sticky_hits, t.sticky_repins) == (1, 5, 1)


def test_a_pin_to_a_backend_the_pool_no_longer_has_is_a_miss() -> None:
    setup = Setup(**COOKIE)
    gone = BackendState("web", "10.0.0.99:8000")
    backend, pinned, outcome = setup.pick(with_cookie(gone))
    assert (pinned, outcome) == (None, MISS)
    assert backend in setup.members


def test_an_unhealthy_pinned_backend_is_repinned() -> None:
    setup = Setup(**COOKIE)
    target = setup.members[1]
    target.ejected_until = time.monotonic() + 60  # ejected by passive health
    backend, _, outcome = setup.pick(with_cookie(target))
    assert outcome == REPIN and backend is not target


def test_draining_follow_keeps_sessions_until_the_deadline() -> None:
    setup = Setup(sticky={"cookie": {"secret": "x", "draining": "follow"}})
    target = setup.members[0]
    target.admin = Admin.DRAINING
    target.drain_deadline = time.monotonic() + 60
    assert setup.pick(with_cookie(target)) == (target, target, HIT)
    # a new session does not land on it
    for _ in range(9):
        backend, _, outcome = setup.pick()
        assert outcome == MISS and backend is not target
    target.drain_deadline = time.monotonic() - 0.001
    backend, _, outcome = setup.pick(with_cookie(target))
    assert outcome == REPIN and backend is not target


def test_draining_repin_moves_sessions_at_once() -> None:
    setup = Setup(sticky={"cookie": {"secret": "x", "draining": "repin"}})
    target = setup.members[0]
    target.admin = Admin.DRAINING
    target.drain_deadline = time.monotonic() + 60
    backend, pinned, outcome = setup.pick(with_cookie(target))
    assert (pinned, outcome) == (target, REPIN)
    assert backend is not target


def test_source_ip_pins_each_client_and_repins_when_its_backend_goes() -> None:
    setup = Setup(sticky={"source_ip": {"ttl": "5m"}})
    first: dict[str, BackendState] = {}
    for round_ in range(4):
        for i in range(6):
            ip = f"203.0.113.{i}"
            backend, pinned, outcome = setup.pick(request(client_ip=ip), ip)
            assert backend is not None
            if round_ == 0:
                assert outcome == MISS
                first[ip] = backend
            else:
                assert (backend, pinned, outcome) == (first[ip], first[ip], HIT)
    assert len(set(first.values())) == 3  # round robin spread the new clients
    ip = "203.0.113.0"
    first[ip].admin = Admin.DISABLED
    moved, _, outcome = setup.pick(request(client_ip=ip), ip)
    assert outcome == REPIN and moved is not first[ip]
    assert setup.pick(request(client_ip=ip), ip) == (moved, moved, HIT)  # the table follows
    assert setup.tracking.source is not None and len(setup.tracking.source) == 6


def test_a_pool_that_does_not_stick_reports_no_outcome() -> None:
    setup = Setup(algorithm="maglev", hash_key="header:x-user-id")
    backend, pinned, outcome = setup.pick(request(headers={"x-user-id": "u-1"}))
    assert backend is not None and (pinned, outcome) == (None, "")
    for _ in range(20):  # and the key decides
        assert setup.pick(request(headers={"x-user-id": "u-1"}))[0] is backend


def test_without_a_request_the_client_address_is_the_key() -> None:
    # tcp and udp listeners hand no request: hashing keys on the client address
    setup = Setup(algorithm="consistent_hash")
    affinity, balancer = setup.affinity()
    ctx = PickContext(CLIENT)
    affinity.pick(balancer, ctx, None, CLIENT)
    assert ctx.hash_key == CLIENT.encode()


# --- what the hot-key view is fed -------------------------------------------------------------


def keys_seen(setup: Setup, req: RequestHead) -> list[str]:
    setup.pick(req)
    return [key for key, _, _ in setup.tracking.keys.top(10)]


def test_plain_keys_are_shown_truncated_to_64_characters() -> None:
    setup = Setup(algorithm="consistent_hash", hash_key="header:x-user-id")
    assert keys_seen(setup, request(headers={"x-user-id": "u" * 200})) == ["u" * 64]


@pytest.mark.parametrize(
    ("hash_key", "headers"),
    [
        ("cookie:session", {"Cookie": "session=topsecret-value"}),
        ("header:authorization", {"Authorization": "Bearer topsecret-value"}),
        ("header:cookie", {"Cookie": "topsecret-value"}),
        ("header:proxy-authorization", {"Proxy-Authorization": "Basic topsecret-value"}),
    ],
)
def test_secret_keys_are_shown_as_a_hash_never_as_they_are(
    hash_key: str, headers: dict[str, str]
) -> None:
    setup = Setup(algorithm="maglev", hash_key=hash_key)
    req = request(headers=headers)
    [label] = keys_seen(setup, req)
    assert re.fullmatch(r"#[0-9a-f]{12}", label), label
    assert "topsecret" not in label
    value = (
        b"topsecret-value"
        if hash_key.startswith("cookie")
        else next(v for k, v in req.headers if k.decode() == hash_key.partition(":")[2])
    )
    assert keys_seen(setup, request(headers=headers)) == [label]  # the same key, the same label
    assert value not in label.encode()


def test_client_addresses_are_counted_where_affinity_keys_on_them() -> None:
    cases: list[tuple[str, str | None, dict[str, Any] | None, bool]] = [
        ("ip_hash", None, None, True),
        ("round_robin", None, {"source_ip": {}}, True),
        ("consistent_hash", None, None, True),
        ("maglev", "client_ip", None, True),
        ("maglev", "header:x-user-id", None, False),
        ("round_robin", None, {"cookie": {"secret": "x"}}, False),
    ]
    for algorithm, hash_key, sticky, watched in cases:
        fields: dict[str, Any] = {"algorithm": algorithm}
        if hash_key is not None:
            fields["hash_key"] = hash_key
        if sticky is not None:
            fields["sticky"] = sticky
        setup = Setup(**fields)
        setup.pick(request(headers={"x-user-id": "u-1"}))
        assert (setup.tracking.clients.total == 1) is watched, (algorithm, hash_key, sticky)
