"""The config for HTTP/2 backends and gRPC: `protocol: h2` on a pool, `grpc` route matches and
health probes, each error reported with its path."""

from __future__ import annotations

import pytest

from evenflow.config.health import ActiveHealth

from .helpers import config, load, problem, with_backends, with_route


def test_pools_speak_http1_unless_told() -> None:
    pool = load(with_backends("10.0.0.1:8000")).config.pools["web"]
    assert pool.protocol == "http1"


def test_h2_pool_is_accepted() -> None:
    pool = load(with_backends("10.0.0.1:50051", protocol="h2")).config.pools["web"]
    assert pool.protocol == "h2"


def test_unknown_pool_protocol_is_refused() -> None:
    path, message = problem(with_backends("10.0.0.1:50051", protocol="http2"))
    assert path == "pools.web.protocol"
    assert "'http1'" in message and "'h2'" in message


@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_h2_pool_behind_an_l4_listener_is_refused(kind: str) -> None:
    data = config(
        listeners=[{"name": "l4", "bind": "127.0.0.1:9000", "protocol": kind, "pool": "web"}],
        pools={"web": {"protocol": "h2", "backends": ["10.0.0.1:50051"]}},
    )
    path, message = problem(data)
    assert path == "pools.web.protocol"
    assert "listeners[0]" in message and "HTTP/2" in message


def test_the_documented_grpc_route_and_pool_load() -> None:
    # CONFIG.md: the grpc-users route and the users-grpc pool (without its tls)
    data = config(
        routes=[
            {
                "name": "grpc-users",
                "match": {"grpc": {"service": "users.v1.Users"}},
                "pool": "users-grpc",
            },
            {"name": "default", "pool": "web"},
        ],
        pools={
            "web": {"backends": ["10.0.0.1:8000"]},
            "users-grpc": {
                "protocol": "h2",
                "backends": ["10.0.4.1:50051", "10.0.4.2:50051"],
                "health": {"active": {"grpc": {"service": "users.v1.Users"}, "interval": "5s"}},
            },
        },
    )
    loaded = load(data).config
    route = loaded.listeners[0].routes[0]  # type: ignore[union-attr]
    assert route.match.grpc is not None
    assert (route.match.grpc.service, route.match.grpc.method) == ("users.v1.Users", None)
    active = loaded.pools["users-grpc"].health.active
    assert active is not None and active.kind == "grpc"
    assert active.grpc is not None and active.grpc.service == "users.v1.Users"


def test_grpc_method_is_kept() -> None:
    data = with_route(match={"grpc": {"service": "users.v1.Users", "method": "GetUser"}})
    route = load(data).config.listeners[0].routes[0]  # type: ignore[union-attr]
    assert route.match.grpc is not None and route.match.grpc.method == "GetUser"


def test_grpc_match_with_a_bad_name_names_the_field() -> None:
    path, message = problem(with_route(match={"grpc": {"service": "users/v1"}}))
    assert path == "listeners[0].routes[0].match.grpc.service"
    assert "not a gRPC name" in message


def test_grpc_probe_defaults_to_the_whole_server() -> None:
    active = ActiveHealth.model_validate({"grpc": {}})
    assert active.kind == "grpc"
    assert active.grpc is not None and active.grpc.service == ""


def test_two_probe_kinds_are_refused() -> None:
    data = with_backends(
        "10.0.0.1:50051", health={"active": {"grpc": {}, "http": {"path": "/healthz"}}}
    )
    path, message = problem(data)
    assert path == "pools.web.health.active"
    assert "give one probe kind" in message and "http and grpc" in message


def test_grpc_probe_service_with_a_slash_is_refused() -> None:
    data = with_backends("10.0.0.1:50051", health={"active": {"grpc": {"service": "a/b"}}})
    path, _ = problem(data)
    assert path == "pools.web.health.active.grpc.service"
