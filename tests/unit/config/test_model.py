"""The schema's own rules: unknown keys, required fields, addresses, weights, matches, routes.

Each test breaks one thing and asserts the path and message a user would read from
`evenflow check`.
"""

from __future__ import annotations

from typing import Any

import pytest

from evenflow.config.model import BackendConfig, Match, ValueMatch

from .helpers import MINIMAL, config, load, problem, with_backends, with_route

UNKNOWN = "unknown key (check the spelling; see `evenflow schema`)"

# --- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (config(listners=[]), "listners"),
        (config(access_log={"fromat": "json"}), "access_log.fromat"),
        (config(listener={"bnd": "127.0.0.1:80"}), "listeners[0].bnd"),
        (config(listener={"timeouts": {"idel": "5s"}}), "listeners[0].timeouts.idel"),
        (config(listener={"limits": {"max_conns": 5}}), "listeners[0].limits.max_conns"),
        (with_route(mtch={}), "listeners[0].routes[0].mtch"),
        (with_route(match={"path": "/"}), "listeners[0].routes[0].match.path"),
        (
            with_route(match={"headers": {"x-canary": {"exactly": "1"}}}),
            "listeners[0].routes[0].match.headers.x-canary.exactly",
        ),
        (
            with_route(split=[{"pool": "web", "wieght": 1, "weight": 1}]),
            "listeners[0].routes[0].split[0].wieght",
        ),
        (
            with_route(request_headers={"sett": {"x-a": "1"}}),
            "listeners[0].routes[0].request_headers.sett",
        ),
        (with_backends("10.0.0.1:8000", algo="random"), "pools.web.algo"),
        (with_backends({"address": "10.0.0.1:8000", "wieght": 2}), "pools.web.backends[0].wieght"),
        (with_backends("10.0.0.1:8000", timeouts={"conect": "1s"}), "pools.web.timeouts.conect"),
        (with_backends("10.0.0.1:8000", retries={"attempt": 2}), "pools.web.retries.attempt"),
    ],
)
def test_unknown_key_at_any_depth_is_an_error(data: dict[str, Any], path: str) -> None:
    assert problem(data) == (path, UNKNOWN)


# --- required fields --------------------------------------------------------------------------


def test_missing_listeners_and_pools() -> None:
    assert problem({"pools": MINIMAL["pools"]}) == ("listeners", "required")
    assert problem({"listeners": MINIMAL["listeners"]}) == ("pools", "required")


@pytest.mark.parametrize("field", ["name", "bind"])
def test_listener_without_a_required_field(field: str) -> None:
    data = config()
    del data["listeners"][0][field]
    assert problem(data) == (f"listeners[0].{field}", "required")


def test_pool_without_backends() -> None:
    assert problem(config(pools={"web": {}})) == ("pools.web.backends", "required")


def test_backend_without_an_address() -> None:
    assert problem(with_backends({"weight": 2})) == ("pools.web.backends[0].address", "required")


@pytest.mark.parametrize("field", ["pool", "weight"])
def test_split_branch_without_a_required_field(field: str) -> None:
    branch: dict[str, Any] = {"pool": "web", "weight": 1}
    del branch[field]
    data = with_route(split=[{"pool": "web", "weight": 1}, branch])
    assert problem(data) == (f"listeners[0].routes[0].split[1].{field}", "required")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"listeners": [], "pools": MINIMAL["pools"]}, "listeners"),
        (config(pools={}), "pools"),
        (with_backends(), "pools.web.backends"),
    ],
)
def test_empty_list_where_one_is_needed(data: dict[str, Any], path: str) -> None:
    where, message = problem(data)
    assert where == path
    assert "at least 1 item" in message


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("127.0.0.1", "'127.0.0.1' is not host:port"),
        (":8080", "':8080' is not host:port"),
        ("127.0.0.1:70000", "'127.0.0.1:70000': port must be a number from 1 to 65535"),
        ("127.0.0.1:http", "'127.0.0.1:http': port must be a number from 1 to 65535"),
        ("127.0.0.1:-1", "'127.0.0.1:-1': port must be a number from 1 to 65535"),
        ("127.0.0.1:٨٠", "'127.0.0.1:٨٠': port must be a number from 1 to 65535"),
        ("::1:80", "'::1:80': write IPv6 addresses as [addr]:port"),
        ("[::1]", "'[::1]' is not [ipv6]:port"),
        ("[::1]80", "'[::1]80' is not [ipv6]:port"),
    ],
)
def test_listener_bind_that_is_not_host_port(bind: str, message: str) -> None:
    assert problem(config(listener={"bind": bind})) == ("listeners[0].bind", message)


def test_backend_on_port_0_is_refused() -> None:
    assert problem(with_backends("10.0.0.1:0")) == (
        "pools.web.backends[0].address",
        "'10.0.0.1:0': port must be a number from 1 to 65535",
    )


@pytest.mark.parametrize("bind", ["[::1]:8080", "[::]:8080", "0.0.0.0:8080", "localhost:8080"])
def test_valid_binds(bind: str) -> None:
    assert load(config(listener={"bind": bind})).config.listeners[0].bind == bind


# --- backends and weights ---------------------------------------------------------------------


def test_backend_shorthand_string_is_weight_1() -> None:
    pool = load(with_backends("10.0.0.1:8000", {"address": "10.0.0.2:8000", "weight": 4})).config
    assert pool.pools["web"].backends == [
        BackendConfig(address="10.0.0.1:8000", weight=1),
        BackendConfig(address="10.0.0.2:8000", weight=4),
    ]


@pytest.mark.parametrize("value", [8000, None, ["10.0.0.1", 8000]])
def test_backend_that_is_neither_a_string_nor_a_mapping(value: Any) -> None:
    assert problem(with_backends("10.0.0.1:8000", value)) == (
        "pools.web.backends[1]",
        f"{value!r}: a backend is host:port or {{address: host:port, weight: N}}",
    )


def test_backend_shorthand_with_a_bad_address_names_the_entry() -> None:
    path, message = problem(with_backends("10.0.0.1:8000", "10.0.0.2"))
    assert (path, message) == ("pools.web.backends[1].address", "'10.0.0.2' is not host:port")


def test_negative_weight() -> None:
    data = with_backends("10.0.0.1:8000", {"address": "10.0.0.2:8000", "weight": -1})
    assert problem(data) == ("pools.web.backends[1].weight", "must be >= 0")


def test_fractional_weight() -> None:
    path, message = problem(with_backends({"address": "10.0.0.2:8000", "weight": 1.5}))
    assert path == "pools.web.backends[0].weight"
    assert "valid integer" in message


def test_weight_0_is_allowed_beside_a_positive_one() -> None:
    data = with_backends({"address": "10.0.0.1:8000", "weight": 0}, "10.0.0.2:8000")
    assert [b.weight for b in load(data).config.pools["web"].backends] == [0, 1]


def test_unknown_algorithm_lists_the_known_ones() -> None:
    path, message = problem(with_backends("10.0.0.1:8000", algorithm="leastconn"))
    assert path == "pools.web.algorithm"
    for name in ("round_robin", "weighted_round_robin", "least_conn", "power_of_two", "random"):
        assert f"'{name}'" in message


@pytest.mark.parametrize(("attempts", "message"), [(0, "must be >= 1"), (11, "must be <= 10")])
def test_retry_attempts_out_of_range(attempts: int, message: str) -> None:
    data = with_backends("10.0.0.1:8000", retries={"attempts": attempts})
    assert problem(data) == ("pools.web.retries.attempts", message)


def test_pool_defaults() -> None:
    pool = load(with_backends("10.0.0.1:8000")).config.pools["web"]
    assert pool.algorithm == "round_robin"
    assert (pool.timeouts.connect, pool.timeouts.response, pool.timeouts.idle) == (2, 30, 30)
    assert pool.retries.attempts == 3
    assert pool.max_idle_connections == 128


# --- routes: pool or split --------------------------------------------------------------------


def test_route_with_pool_and_split() -> None:
    data = with_route(pool="web", split=[{"pool": "web", "weight": 1}])
    assert problem(data) == ("listeners[0].routes[0]", "give exactly one of pool or split")


def test_route_with_neither_pool_nor_split() -> None:
    data = config(routes=[{"name": "orphan", "match": {"path_prefix": "/"}}])
    assert problem(data) == ("listeners[0].routes[0]", "give exactly one of pool or split")


@pytest.mark.parametrize("split", [[{"pool": "web", "weight": 0}], []])
def test_split_with_no_positive_weight(split: list[dict[str, Any]]) -> None:
    assert problem(with_route(split=split)) == (
        "listeners[0].routes[0]",
        "split: at least one branch needs a weight > 0",
    )


def test_split_branch_with_a_negative_weight() -> None:
    data = with_route(split=[{"pool": "web", "weight": 1}, {"pool": "web", "weight": -5}])
    assert problem(data) == ("listeners[0].routes[0].split[1].weight", "must be >= 0")


def test_listener_without_routes_or_pool() -> None:
    assert problem(config(routes=[])) == (
        "listeners[0]",
        "give routes, or pool for a single catch-all route",
    )


def test_listener_pool_alone_is_a_catch_all() -> None:
    listener = load(config(routes=[], listener={"pool": "web"})).config.listeners[0]
    assert (listener.routes, listener.pool) == ([], "web")


# --- match ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["headers", "query", "cookies"])
@pytest.mark.parametrize(
    "value", [{}, {"exact": "a", "present": True}, {"exact": "a", "regex": "a"}, {"exact": None}]
)
def test_value_match_needs_exactly_one_of_exact_regex_present(
    field: str, value: dict[str, Any]
) -> None:
    data = with_route(match={field: {"x-v": value}})
    assert problem(data) == (
        f"listeners[0].routes[0].match.{field}.x-v",
        "give exactly one of exact, regex or present",
    )


def test_value_match_shorthands() -> None:
    match = Match.model_validate({"headers": {"x-canary": "true", "x-debug": True}})
    assert match.headers == {
        "x-canary": ValueMatch(exact="true"),
        "x-debug": ValueMatch(present=True),
    }


def test_value_match_given_a_number_says_to_quote_it() -> None:
    assert problem(with_route(match={"headers": {"x-api-version": 2}})) == (
        "listeners[0].routes[0].match.headers.x-api-version",
        "2: write the value as a quoted string, or as {exact|regex|present: ...}",
    )


@pytest.mark.parametrize(
    ("match", "path"),
    [
        ({"path_regex": "/api/(["}, "match.path_regex"),
        ({"headers": {"x-v": {"regex": "*v1"}}}, "match.headers.x-v.regex"),
        ({"query": {"v": {"regex": "("}}}, "match.query.v.regex"),
        ({"cookies": {"c": {"regex": "a{2,1}"}}}, "match.cookies.c.regex"),
    ],
)
def test_invalid_regular_expression(match: dict[str, Any], path: str) -> None:
    where, message = problem(with_route(match=match))
    assert where == f"listeners[0].routes[0].{path}"
    assert message.startswith("invalid regular expression ")


def test_two_path_matchers() -> None:
    data = with_route(match={"path_prefix": "/api/", "path_exact": "/api"})
    assert problem(data) == (
        "listeners[0].routes[0].match",
        "give at most one of path_prefix, path_exact, path_regex: ['path_prefix', 'path_exact']",
    )


def test_methods_are_uppercased() -> None:
    assert Match.model_validate({"methods": ["get", "Post", "DELETE"]}).methods == [
        "GET",
        "POST",
        "DELETE",
    ]


def test_methods_must_be_a_list() -> None:
    assert problem(with_route(match={"methods": "GET"})) == (
        "listeners[0].routes[0].match.methods",
        "Input should be a valid list",
    )


@pytest.mark.parametrize(
    ("host", "hosts"),
    [
        ("api.example.com", ["api.example.com"]),
        (["a.example.com", "*.example.org"], ["a.example.com", "*.example.org"]),
    ],
)
def test_host_as_a_string_or_a_list(host: str | list[str], hosts: list[str]) -> None:
    assert Match.model_validate({"host": host}).host == hosts


@pytest.mark.parametrize(
    "host",
    ["api*.example.com", "*.", "*", "a.*.example.com", "*.*.com", "*example.com", "www.*", ""],
)
def test_host_wildcard_other_than_a_whole_first_label(host: str) -> None:
    # `check` must refuse what the route table would refuse at start-up.
    assert problem(with_route(match={"host": ["ok.example.com", host]})) == (
        "listeners[0].routes[0].match.host",
        f"host {host!r}: a wildcard may only be a whole first label, as '*.example.com'",
    )


def test_header_match_names_and_values_that_cannot_be_on_the_wire() -> None:
    path, message = problem(with_route(match={"headers": {"x-a": "1\r\nx-b: 2"}}))
    assert path == "listeners[0].routes[0].match.headers"
    assert "control character" in message


def test_rewrite_of_a_framing_header() -> None:
    path, message = problem(with_route(request_headers={"set": {"Content-Length": "0"}}))
    assert path == "listeners[0].routes[0].request_headers.set"
    assert message.startswith("header 'Content-Length' cannot be rewritten")


def test_access_log_format() -> None:
    assert problem(config(access_log={"format": "xml"})) == (
        "access_log.format",
        "Input should be 'json' or 'combined'",
    )
