"""`match: {grpc: {service, method}}`: the path names the call, the content-type says gRPC."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from evenflow.config.model import Route
from evenflow.core.request import RequestHead
from evenflow.routing.matchers import compile_match

GRPC = [(b"content-type", b"application/grpc")]


def call(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> RequestHead:
    return RequestHead("POST", path, "grpc.test", GRPC if headers is None else headers)


def matches(grpc: dict[str, Any], req: RequestHead, **more: Any) -> bool:
    test = compile_match(Route.model_validate({"match": {"grpc": grpc, **more}, "pool": "p"}).match)
    assert test is not None
    return test(req)


USERS = {"service": "users.v1.Users"}
GET_USER = {"service": "users.v1.Users", "method": "GetUser"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users.v1.Users/GetUser", True),
        ("/users.v1.Users/ListUsers", True),
        ("/users.v1.Users/", False),  # no method
        ("/users.v1.Users", False),
        ("/users.v1.UsersAdmin/GetUser", False),  # another service sharing the prefix
        ("/v1.Users/GetUser", False),
        ("/users.v1.Users/GetUser/extra", False),
        ("/x/users.v1.Users/GetUser", False),
    ],
)
def test_service_matches_every_method_of_that_service_only(path: str, expected: bool) -> None:
    assert matches(USERS, call(path)) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users.v1.Users/GetUser", True),
        ("/users.v1.Users/GetUsers", False),
        ("/users.v1.Users/Get", False),
        ("/users.v1.Users/getuser", False),  # names are case-sensitive
        ("/orders.v1.Orders/GetUser", False),
    ],
)
def test_method_matches_that_one_call(path: str, expected: bool) -> None:
    assert matches(GET_USER, call(path)) is expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"application/grpc", True),
        (b"application/grpc+proto", True),
        (b"application/grpc+json", True),
        (b"Application/GRPC", True),
        (b"application/grpc-web", True),  # grpc-web's types start alike; routed the same
        (b"application/json", False),
        (b"text/plain", False),
        (b"application/grp", False),
    ],
)
def test_only_grpc_content_types_match(content_type: bytes, expected: bool) -> None:
    req = call("/users.v1.Users/GetUser", [(b"content-type", content_type)])
    assert matches(USERS, req) is expected
    assert matches(GET_USER, req) is expected


def test_a_call_without_content_type_is_not_grpc() -> None:
    assert not matches(USERS, call("/users.v1.Users/GetUser", []))


def test_the_query_string_is_not_part_of_the_method() -> None:
    assert matches(GET_USER, call("/users.v1.Users/GetUser?x=1"))


def test_grpc_combines_with_other_conditions() -> None:
    req = call("/users.v1.Users/GetUser", [*GRPC, (b"x-tenant", b"a")])
    assert matches(USERS, req, headers={"x-tenant": "a"})
    assert not matches(USERS, req, headers={"x-tenant": "b"})
    assert not matches(USERS, req, methods=["GET"])


@pytest.mark.parametrize(
    "grpc",
    [
        {},
        {"method": "GetUser"},
        {"service": ""},
        {"service": "users/v1"},
        {"service": "users.v1.Users", "method": "Get/User"},
        {"service": "users v1"},
        {"service": "users.v1.Users", "verb": "x"},
    ],
)
def test_invalid_grpc_matches_are_refused(grpc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Route.model_validate({"match": {"grpc": grpc}, "pool": "p"})
