"""Rules that span fields (config/checks.py): pools that exist, unique names and binds, weights.

A problem found here carries the path of the field to fix, and every problem of a file is
reported at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import config, load, problem, problems, with_backends


def two_listeners(bind_a: str, bind_b: str, name_b: str = "admin") -> dict[str, Any]:
    return config(
        listeners=[
            {"name": "web", "bind": bind_a, "pool": "web"},
            {"name": name_b, "bind": bind_b, "pool": "web"},
        ]
    )


# --- pools named by routes and listeners ------------------------------------------------------


def test_route_naming_a_missing_pool() -> None:
    data = config(
        routes=[{"match": {"path_prefix": "/api/"}, "pool": "web"}, {"pool": "api"}],
        pools={"web": {"backends": ["10.0.0.1:8000"]}, "www": {"backends": ["10.0.0.2:8000"]}},
    )
    assert problem(data) == (
        "listeners[0].routes[1].pool",
        "pool 'api' does not exist (pools: web, www)",
    )


def test_split_branch_naming_a_missing_pool() -> None:
    split = [{"pool": "web", "weight": 9}, {"pool": "canary", "weight": 1}]
    data = config(routes=[{"split": split}])
    assert problem(data) == (
        "listeners[0].routes[0].split[1].pool",
        "pool 'canary' does not exist (pools: web)",
    )


def test_listener_catch_all_naming_a_missing_pool() -> None:
    data = config(listener={"pool": "default"})
    assert problem(data) == ("listeners[0].pool", "pool 'default' does not exist (pools: web)")


def test_unused_pool_is_a_warning_not_an_error() -> None:
    pools = {"web": {"backends": ["10.0.0.1:8000"]}, "spare": {"backends": ["10.0.0.2:8000"]}}
    loaded = load(config(pools=pools))
    assert set(loaded.config.pools) == {"web", "spare"}
    assert loaded.warnings == [("pools.spare", "pool is not used by any listener or route")]


def test_pool_used_only_by_a_split_counts_as_used() -> None:
    pools = {"web": {"backends": ["10.0.0.1:8000"]}, "canary": {"backends": ["10.0.0.2:8000"]}}
    split = [{"pool": "web", "weight": 9}, {"pool": "canary", "weight": 0}]
    assert load(config(routes=[{"split": split}], pools=pools)).warnings == []


# --- weights and backends ---------------------------------------------------------------------


def test_pool_whose_backends_all_have_weight_0() -> None:
    data = with_backends(
        {"address": "10.0.0.1:8000", "weight": 0}, {"address": "10.0.0.2:8000", "weight": 0}
    )
    assert problem(data) == ("pools.web.backends", "at least one backend needs a weight > 0")


def test_duplicate_backend_address() -> None:
    again = {"address": "10.0.0.1:8000", "weight": 3}
    data = with_backends("10.0.0.1:8000", "10.0.0.2:8000", again)
    assert problem(data) == ("pools.web.backends[2].address", "10.0.0.1:8000 is also backends[0]")


def test_same_backend_in_two_pools_is_fine() -> None:
    pools = {"web": {"backends": ["10.0.0.1:8000"]}, "api": {"backends": ["10.0.0.1:8000"]}}
    data = config(routes=[{"match": {"path_prefix": "/api/"}, "pool": "api"}, {"pool": "web"}])
    data["pools"] = pools
    assert load(data).warnings == []


# --- names ------------------------------------------------------------------------------------


def test_route_name_used_twice_in_a_listener() -> None:
    routes = [
        {"name": "api", "match": {"path_prefix": "/api/"}, "pool": "web"},
        {"name": "web", "pool": "web"},
        {"name": "api", "match": {"path_prefix": "/v2/"}, "pool": "web"},
    ]
    assert problem(config(routes=routes)) == (
        "listeners[0].routes[2].name",
        "route name 'api' used twice",
    )


def test_same_route_name_in_two_listeners_is_fine() -> None:
    data = two_listeners("127.0.0.1:8080", "127.0.0.1:8081")
    for listener in data["listeners"]:
        listener["routes"] = [{"name": "default", "pool": "web"}]
    assert len(load(data).config.listeners) == 2


def test_listener_name_used_twice() -> None:
    data = two_listeners("127.0.0.1:8080", "127.0.0.1:8081", name_b="web")
    assert problem(data) == ("listeners[1].name", "'web' is also listeners[0]")


# --- binds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind_a", "bind_b"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("0.0.0.0:8080", "0.0.0.0:8080"),
        ("0.0.0.0:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("[::]:8080", "[::1]:8080"),
        ("[::1]:8080", "[::]:8080"),
    ],
)
def test_binds_that_collide(bind_a: str, bind_b: str) -> None:
    assert problem(two_listeners(bind_a, bind_b)) == (
        "listeners[1].bind",
        f"{bind_b} collides with listeners[0] (web)",
    )


@pytest.mark.parametrize(
    ("bind_a", "bind_b"),
    [
        ("127.0.0.1:8080", "127.0.0.1:8081"),
        ("127.0.0.1:8080", "127.0.0.2:8080"),
        # asyncio and uvloop bind IPv6 sockets with IPV6_V6ONLY, so the two wildcards coexist
        ("0.0.0.0:8080", "[::]:8080"),
        ("[::1]:8080", "127.0.0.1:8080"),
    ],
)
def test_binds_that_do_not_collide(bind_a: str, bind_b: str) -> None:
    assert len(load(two_listeners(bind_a, bind_b)).config.listeners) == 2


# --- every problem at once --------------------------------------------------------------------


def test_three_independent_schema_errors_give_three_problems() -> None:
    data = config(
        listener={"bnd": "127.0.0.1:80", "timeouts": {"idle": "60"}},
        pools={"web": {"backends": [{"address": "10.0.0.1:8000", "weight": -1}]}},
    )
    assert sorted(problems(data)) == [
        ("listeners[0].bnd", "unknown key (check the spelling; see `evenflow schema`)"),
        (
            "listeners[0].timeouts.idle",
            "'60' is not a duration: write it with a unit, as 250ms, 5s, 2m or 1h",
        ),
        ("pools.web.backends[0].weight", "must be >= 0"),
    ]


def test_three_independent_cross_field_errors_give_three_problems() -> None:
    data = config(
        routes=[{"name": "a", "pool": "api"}, {"name": "a", "pool": "web"}],
        pools={"web": {"backends": [{"address": "10.0.0.1:8000", "weight": 0}]}},
    )
    assert sorted(problems(data)) == [
        ("listeners[0].routes[0].pool", "pool 'api' does not exist (pools: web)"),
        ("listeners[0].routes[1].name", "route name 'a' used twice"),
        ("pools.web.backends", "at least one backend needs a weight > 0"),
    ]
