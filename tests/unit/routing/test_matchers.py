"""Each matcher kind of a route's `match:` block, built from config dicts as a user writes them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from evenflow.config.load import ConfigError, load_data
from evenflow.config.model import Match, Route
from evenflow.core.request import RequestHead
from evenflow.routing.matchers import compile_match


def request(
    target: str = "/",
    host: str = "example.com",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> RequestHead:
    return RequestHead(method, target, host, headers or [])


def matches(match: dict[str, Any], req: RequestHead) -> bool:
    test = compile_match(Route.model_validate({"match": match, "pool": "p"}).match)
    assert test is not None, "a match with conditions must compile to a predicate"
    return test(req)


def test_no_conditions_compile_to_none() -> None:
    assert compile_match(Route.model_validate({"pool": "p"}).match) is None
    assert compile_match(Route.model_validate({"match": {}, "pool": "p"}).match) is None


# --- host -------------------------------------------------------------------------------------


def test_host_exact_is_case_insensitive_on_the_config_side() -> None:
    assert matches({"host": "API.Example.com"}, request(host="api.example.com"))
    assert not matches({"host": "api.example.com"}, request(host="www.example.com"))


def test_host_list_matches_any_of_them() -> None:
    match = {"host": ["a.example.com", "b.example.com"]}
    assert matches(match, request(host="a.example.com"))
    assert matches(match, request(host="b.example.com"))
    assert not matches(match, request(host="c.example.com"))


def test_host_trailing_dot_is_the_same_name() -> None:
    assert matches({"host": "example.com"}, request(host="example.com."))
    assert matches({"host": "example.com."}, request(host="example.com"))


@pytest.mark.parametrize("host", ["a.example.com", "a.b.example.com", "x-1.example.com"])
def test_host_wildcard_matches_subdomains(host: str) -> None:
    assert matches({"host": "*.example.com"}, request(host=host))


@pytest.mark.parametrize(
    "host", ["example.com", "badexample.com", ".example.com", "example.org", ""]
)
def test_host_wildcard_refuses_the_apex_and_lookalikes(host: str) -> None:
    assert not matches({"host": "*.example.com"}, request(host=host))


def test_host_exact_and_wildcard_together() -> None:
    match = {"host": ["example.com", "*.example.com"]}
    assert matches(match, request(host="example.com"))
    assert matches(match, request(host="www.example.com"))
    assert not matches(match, request(host="example.net"))


@pytest.mark.parametrize("pattern", ["*", "*.", "a.*.com", "*example.com", "www.*"])
def test_host_bad_wildcard_is_refused_at_compile_time(pattern: str) -> None:
    # The config model refuses these first; construct past it to test the compiler's own check.
    with pytest.raises(ValueError, match="host"):
        compile_match(Match.model_construct(host=[pattern]))


# --- path -------------------------------------------------------------------------------------


def test_path_prefix() -> None:
    assert matches({"path_prefix": "/api/"}, request("/api/users"))
    assert matches({"path_prefix": "/api/"}, request("/api/"))
    assert not matches({"path_prefix": "/api/"}, request("/api"))
    assert not matches({"path_prefix": "/api/"}, request("/web/api/"))


def test_path_exact_ignores_the_query() -> None:
    assert matches({"path_exact": "/login"}, request("/login"))
    assert matches({"path_exact": "/login"}, request("/login?next=/home"))
    assert not matches({"path_exact": "/login"}, request("/login/"))


def test_path_is_compared_as_sent_not_decoded() -> None:
    assert matches({"path_exact": "/a%20b"}, request("/a%20b"))
    assert not matches({"path_exact": "/a b"}, request("/a%20b"))


def test_path_regex_is_a_fullmatch() -> None:
    match = {"path_regex": r"/users/\d+"}
    assert matches(match, request("/users/42"))
    assert matches(match, request("/users/42?x=1"))
    assert not matches(match, request("/users/42/posts"))
    assert not matches(match, request("/v1/users/42"))


# --- methods ----------------------------------------------------------------------------------


def test_methods() -> None:
    match = {"methods": ["get", "POST"]}
    assert matches(match, request(method="GET"))
    assert matches(match, request(method="POST"))
    assert not matches(match, request(method="DELETE"))


def test_methods_are_case_sensitive_on_the_wire() -> None:
    # RFC 9110 §9.1: "get" is not GET
    assert not matches({"methods": ["GET"]}, request(method="get"))


# --- headers ----------------------------------------------------------------------------------


def test_header_exact_name_is_case_insensitive() -> None:
    req = request(headers=[(b"x-canary", b"true")])
    assert matches({"headers": {"X-Canary": "true"}}, req)
    assert matches({"headers": {"x-canary": "true"}}, req)


def test_header_exact_value_is_byte_for_byte() -> None:
    assert not matches({"headers": {"x-canary": "true"}}, request(headers=[(b"x-canary", b"True")]))
    assert not matches({"headers": {"x-canary": "true"}}, request(headers=[(b"x-canary", b"")]))
    assert not matches({"headers": {"x-canary": "true"}}, request())


def test_header_exact_matches_any_of_several_lines() -> None:
    req = request(headers=[(b"x-tag", b"a"), (b"host", b"example.com"), (b"x-tag", b"b")])
    assert matches({"headers": {"x-tag": "b"}}, req)
    assert matches({"headers": {"x-tag": "a"}}, req)
    assert not matches({"headers": {"x-tag": "c"}}, req)


def test_header_line_is_not_split_on_commas() -> None:
    req = request(headers=[(b"x-tag", b"a, b")])
    assert matches({"headers": {"x-tag": "a, b"}}, req)
    assert not matches({"headers": {"x-tag": "b"}}, req)


def test_header_exact_latin1_value() -> None:
    req = request(headers=[(b"x-name", "café".encode("latin-1"))])
    assert matches({"headers": {"x-name": "café"}}, req)


def test_header_regex_is_a_search() -> None:
    req = request(headers=[(b"user-agent", b"Mozilla/5.0 (compatible; Googlebot/2.1)")])
    assert matches({"headers": {"User-Agent": {"regex": "[Bb]ot/"}}}, req)
    assert matches({"headers": {"user-agent": {"regex": "^Mozilla"}}}, req)
    assert not matches({"headers": {"user-agent": {"regex": "^Googlebot"}}}, req)
    assert not matches({"headers": {"user-agent": {"regex": "."}}}, request())


def test_header_regex_matches_any_of_several_lines() -> None:
    req = request(headers=[(b"x-env", b"prod"), (b"x-env", b"staging-3")])
    assert matches({"headers": {"x-env": {"regex": r"staging-\d"}}}, req)
    assert not matches({"headers": {"x-env": {"regex": r"dev"}}}, req)


def test_header_present_true_and_false() -> None:
    with_it = request(headers=[(b"authorization", b"")])
    without = request(headers=[(b"accept", b"*/*")])
    assert matches({"headers": {"Authorization": {"present": True}}}, with_it)
    assert not matches({"headers": {"authorization": {"present": True}}}, without)
    assert matches({"headers": {"authorization": {"present": False}}}, without)
    assert not matches({"headers": {"authorization": {"present": False}}}, with_it)


def test_header_bool_shorthand_means_present() -> None:
    assert matches({"headers": {"x-debug": True}}, request(headers=[(b"x-debug", b"0")]))
    assert not matches({"headers": {"x-debug": False}}, request(headers=[(b"x-debug", b"0")]))


def test_several_headers_must_all_hold() -> None:
    match = {"headers": {"x-a": "1", "x-b": {"present": False}}}
    assert matches(match, request(headers=[(b"x-a", b"1")]))
    assert not matches(match, request(headers=[(b"x-a", b"1"), (b"x-b", b"")]))
    assert not matches(match, request(headers=[(b"x-a", b"2")]))


@pytest.mark.parametrize("name", ["x canary", "x:canary", "", "x-caña", "x\r\nevil"])
def test_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="not a valid token"):
        Route.model_validate({"match": {"headers": {name: "1"}}, "pool": "p"})


@pytest.mark.parametrize("value", ["a\r\nx-evil: 1", "a\nb", "a\x00", "日本"])
def test_header_exact_value_that_cannot_be_on_the_wire_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="x-a"):
        Route.model_validate({"match": {"headers": {"x-a": value}}, "pool": "p"})


def test_bad_header_name_is_reported_with_its_path() -> None:
    data = {
        "listeners": [
            {
                "name": "web",
                "bind": "127.0.0.1:8080",
                "routes": [{"match": {"headers": {"x canary": "true"}}, "pool": "web"}],
            }
        ],
        "pools": {"web": {"backends": ["127.0.0.1:9000"]}},
    }
    with pytest.raises(ConfigError) as info:
        load_data(data)
    assert info.value.problems == [
        (
            "listeners[0].routes[0].match.headers",
            "header name 'x canary' is not a valid token (RFC 9110 §5.6.2)",
        )
    ]


# --- query and cookies ------------------------------------------------------------------------


def test_query_exact_regex_present() -> None:
    req = request("/search?q=load+balancer&debug=&page=2")
    assert matches({"query": {"q": "load balancer"}}, req)  # form-decoded, as parse_qsl does
    assert matches({"query": {"page": {"regex": r"^\d+$"}}}, req)
    assert matches({"query": {"debug": {"present": True}}}, req)
    assert matches({"query": {"trace": {"present": False}}}, req)
    assert not matches({"query": {"page": "3"}}, req)
    assert not matches({"query": {"trace": {"present": True}}}, req)
    assert not matches({"query": {"debug": {"present": False}}}, req)
    assert not matches({"query": {"trace": {"regex": ".*"}}}, req)


def test_query_names_are_case_sensitive() -> None:
    assert not matches({"query": {"Q": {"present": True}}}, request("/?q=1"))


def test_query_uses_the_first_value() -> None:
    req = request("/?v=1&v=2")
    assert matches({"query": {"v": "1"}}, req)
    assert not matches({"query": {"v": "2"}}, req)


def test_cookies_exact_regex_present() -> None:
    req = request(headers=[(b"cookie", b"session=abc123; theme=dark"), (b"cookie", b"beta=1")])
    assert matches({"cookies": {"theme": "dark"}}, req)
    assert matches({"cookies": {"beta": "1"}}, req)  # a second Cookie header counts too
    assert matches({"cookies": {"session": {"regex": "^abc"}}}, req)
    assert matches({"cookies": {"session": {"present": True}}}, req)
    assert matches({"cookies": {"admin": {"present": False}}}, req)
    assert not matches({"cookies": {"theme": "light"}}, req)
    assert not matches({"cookies": {"admin": {"present": True}}}, req)
    assert not matches({"cookies": {"session": {"present": False}}}, req)


def test_cookie_match_without_any_cookie_header() -> None:
    assert not matches({"cookies": {"session": {"regex": ""}}}, request())
    assert matches({"cookies": {"session": {"present": False}}}, request())


# --- combinations -----------------------------------------------------------------------------


def test_every_condition_must_hold() -> None:
    match = {
        "host": "*.example.com",
        "path_prefix": "/api/v1/",
        "methods": ["GET", "POST"],
        "headers": {"x-canary": "true"},
        "query": {"lang": "en"},
        "cookies": {"beta": {"present": True}},
    }
    headers = [(b"x-canary", b"true"), (b"cookie", b"beta=yes")]
    good = request("/api/v1/users?lang=en", "api.example.com", "POST", headers)
    assert matches(match, good)
    variants = [
        request("/api/v1/users?lang=en", "example.com", "POST", headers),
        request("/api/v2/users?lang=en", "api.example.com", "POST", headers),
        request("/api/v1/users?lang=en", "api.example.com", "PUT", headers),
        request("/api/v1/users?lang=en", "api.example.com", "POST", headers[1:]),
        request("/api/v1/users?lang=fr", "api.example.com", "POST", headers),
        request("/api/v1/users?lang=en", "api.example.com", "POST", headers[:1]),
    ]
    for req in variants:
        assert not matches(match, req), (req.host, req.target, req.method, req.headers)
