"""The route table: first match wins, the listener's catch-all, 404s, and split pool picks."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from evenflow.config.model import HttpListener, Match, Route
from evenflow.core.request import RequestHead
from evenflow.routing.table import CompiledRoute, RouteTable, compile_listener, compile_routes


def request(
    target: str = "/",
    host: str = "example.com",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> RequestHead:
    return RequestHead(method, target, host, headers or [])


def table(*routes: dict[str, Any], catch_all: str | None = None) -> RouteTable:
    return compile_routes([Route.model_validate(r) for r in routes], catch_all)


def route(**fields: Any) -> CompiledRoute:
    return compile_routes([Route.model_validate(fields)]).routes[0]


def picks(compiled: CompiledRoute, n: int) -> list[str]:
    return [compiled.pick_pool() for _ in range(n)]


# --- matching ---------------------------------------------------------------------------------


def test_first_match_wins() -> None:
    routes = (
        {"name": "canary", "match": {"headers": {"x-canary": "true"}}, "pool": "canary"},
        {"name": "api", "match": {"path_prefix": "/api/"}, "pool": "api"},
        {"name": "api-users", "match": {"path_prefix": "/api/users"}, "pool": "users"},
    )
    t = table(*routes)
    assert _name(t.match(request("/api/users/1"))) == "api"  # "api-users" is shadowed
    assert _name(t.match(request("/api/x", headers=[(b"x-canary", b"true")]))) == "canary"
    reordered = table(routes[2], routes[1], routes[0])
    assert _name(reordered.match(request("/api/users/1"))) == "api-users"
    assert _name(reordered.match(request("/api/x", headers=[(b"x-canary", b"true")]))) == "api"


def test_nothing_matches_gives_none() -> None:
    t = table(
        {"match": {"host": "api.example.com"}, "pool": "api"},
        {"match": {"path_prefix": "/static/"}, "pool": "static"},
    )
    assert t.match(request("/", host="www.example.com")) is None
    assert _name(t.match(request("/", host="api.example.com"))) == "route-0"
    assert _name(t.match(request("/static/a.css", host="www.example.com"))) == "route-1"


def test_route_without_conditions_matches_everything_and_shadows_the_rest() -> None:
    t = table(
        {"name": "all", "pool": "web"}, {"name": "never", "match": {"path_exact": "/"}, "pool": "x"}
    )
    for req in (request(), request("/x", host="", method="PATCH")):
        assert _name(t.match(req)) == "all"
    assert t.routes[0].test is None  # costs one `is None` test per request


def test_listener_pool_is_the_catch_all_after_the_routes() -> None:
    listener = HttpListener.model_validate(
        {
            "name": "web",
            "bind": "127.0.0.1:8080",
            "routes": [{"name": "api", "match": {"path_prefix": "/api/"}, "pool": "api"}],
            "pool": "web",
        }
    )
    t = compile_listener(listener)
    assert [r.name for r in t.routes] == ["api", "route-1"]
    api = t.match(request("/api/x"))
    assert api is not None and api.pick_pool() == "api"
    fallback = t.match(request("/index.html"))
    assert fallback is not None
    assert fallback.name == "route-1"
    assert fallback.pick_pool() == "web"
    assert fallback.test is None


def test_listener_with_only_a_pool() -> None:
    t = compile_listener(
        HttpListener.model_validate({"name": "web", "bind": "127.0.0.1:8080", "pool": "web"})
    )
    found = t.match(request("/anything", host="whatever"))
    assert found is not None and found.pick_pool() == "web" and not found.is_split


def test_listener_without_pool_has_no_catch_all() -> None:
    listener = HttpListener.model_validate(
        {
            "name": "web",
            "bind": "127.0.0.1:8080",
            "routes": [{"match": {"host": "a.example.com"}, "pool": "a"}],
        }
    )
    t = compile_listener(listener)
    assert len(t.routes) == 1
    assert t.match(request(host="b.example.com")) is None


def test_route_names_default_to_their_index() -> None:
    t = table({"pool": "a"}, {"name": "named", "pool": "b"}, {"pool": "c"})
    assert [r.name for r in t.routes] == ["route-0", "named", "route-2"]
    assert [r.index for r in t.routes] == [0, 1, 2]


def test_compile_error_names_the_route() -> None:
    # The config model refuses this host first; construct past it to test the compiler's check.
    bad = Route.model_construct(
        name="api", match=Match.model_construct(host=["a.*.com"]), pool="api"
    )
    with pytest.raises(ValueError, match=r"route 'api' \(routes\[1\]\): host 'a\.\*\.com'"):
        compile_routes([Route.model_validate({"pool": "web"}), bad])


def test_rewrites_are_compiled_onto_the_route() -> None:
    r = route(
        pool="api",
        request_headers={"set": {"X-Route": "api"}},
        response_headers={"remove": ["server"]},
    )
    assert r.request_rewrite is not None and r.response_rewrite is not None
    assert r.request_rewrite.apply([(b"x-route", b"spoofed")]) == [(b"x-route", b"api")]
    assert r.response_rewrite.apply([(b"server", b"x"), (b"a", b"b")]) == [(b"a", b"b")]
    plain = route(pool="api", request_headers={})
    assert plain.request_rewrite is None and plain.response_rewrite is None


# --- pools and splits -------------------------------------------------------------------------


def test_pool_route_always_picks_its_pool() -> None:
    r = route(pool="api")
    assert not r.is_split
    assert r.pools == ("api",)
    assert set(picks(r, 10)) == {"api"}


def test_split_95_5_gives_exactly_95_and_5_in_every_100_picks() -> None:
    r = route(split=[{"pool": "v1", "weight": 95}, {"pool": "v2", "weight": 5}])
    assert r.is_split
    for _ in range(10):
        assert Counter(picks(r, 100)) == {"v1": 95, "v2": 5}


def test_split_spreads_the_minority_branch_out() -> None:
    # Smooth WRR never sends two v2 in a row at 95/5: the 5 picks are ~20 apart.
    r = route(split=[{"pool": "v1", "weight": 95}, {"pool": "v2", "weight": 5}])
    sequence = picks(r, 100)
    positions = [i for i, pool in enumerate(sequence) if pool == "v2"]
    assert len(positions) == 5
    assert all(b - a >= 19 for a, b in zip(positions, positions[1:], strict=False))


def test_split_one_to_one_alternates() -> None:
    r = route(split=[{"pool": "blue", "weight": 1}, {"pool": "green", "weight": 1}])
    assert picks(r, 6) == ["blue", "green"] * 3


def test_split_matches_nginx_smooth_sequence() -> None:
    # nginx's documented example for weights 5, 1, 1 (ngx_http_upstream_round_robin.c)
    r = route(
        split=[
            {"pool": "a", "weight": 5},
            {"pool": "b", "weight": 1},
            {"pool": "c", "weight": 1},
        ]
    )
    assert picks(r, 14) == ["a", "a", "b", "a", "c", "a", "a"] * 2


def test_split_weight_zero_branch_is_never_picked() -> None:
    r = route(
        split=[
            {"pool": "old", "weight": 0},
            {"pool": "v1", "weight": 3},
            {"pool": "v2", "weight": 1},
        ]
    )
    counts = Counter(picks(r, 400))
    assert counts == {"v1": 300, "v2": 100}
    assert r.pools == ("v1", "v2")


def test_split_with_a_single_live_branch() -> None:
    r = route(split=[{"pool": "v1", "weight": 0}, {"pool": "v2", "weight": 7}])
    assert r.is_split
    assert set(picks(r, 20)) == {"v2"}


def test_each_split_route_keeps_its_own_rotation() -> None:
    t = table(
        {
            "match": {"path_prefix": "/a"},
            "split": [{"pool": "x", "weight": 1}, {"pool": "y", "weight": 1}],
        },
        {
            "match": {"path_prefix": "/b"},
            "split": [{"pool": "x", "weight": 1}, {"pool": "y", "weight": 1}],
        },
    )
    a, b = t.routes
    assert [a.pick_pool(), b.pick_pool(), a.pick_pool(), b.pick_pool()] == ["x", "x", "y", "y"]


def _name(found: CompiledRoute | None) -> str | None:
    return None if found is None else found.name
