"""Routing end to end: host, path, headers and more pick the pool; splits; header rewrites; 404."""

from __future__ import annotations

import collections
from typing import Any

import httpx
import pytest
from proxy_support import (
    Proxy,
    StartBackends,
    StartProxy,
    config,
    echo_headers,
    header_lines,
    raw_client,
    values,
)

pytestmark = pytest.mark.timeout(30)


async def routed(
    backends: StartBackends,
    proxy: StartProxy,
    routes: list[dict[str, Any]],
    names: tuple[str, ...] = ("api", "wild", "v2", "canary", "web"),
) -> Proxy:
    started = await backends(*names)
    pools = {b.name: {"backends": [b.address]} for b in started}
    return await proxy(config(pools, routes=routes))


ROUTES = [
    {"name": "canary", "match": {"headers": {"x-canary": "true"}}, "pool": "canary"},
    {"name": "api", "match": {"host": "api.example.test"}, "pool": "api"},
    {"name": "wild", "match": {"host": "*.example.test"}, "pool": "wild"},
    {"name": "v2", "match": {"path_prefix": "/api/v2/"}, "pool": "v2"},
    {"name": "default", "pool": "web"},
]


@pytest.mark.parametrize(
    ("host", "path", "headers", "pool"),
    [
        ("api.example.test", "/", {}, "api"),
        ("API.Example.TEST", "/", {}, "api"),  # host names are case-insensitive
        ("api.example.test:8080", "/", {}, "api"),  # the port is not part of the name
        ("shop.example.test", "/", {}, "wild"),
        ("a.b.example.test", "/", {}, "wild"),
        ("example.test", "/", {}, "web"),  # *.example.test does not match example.test
        ("notexample.test", "/", {}, "web"),
        ("other.test", "/api/v2/users", {}, "v2"),
        ("other.test", "/api/v2", {}, "web"),  # prefix is "/api/v2/"
        ("other.test", "/api/v1/users", {}, "web"),
        ("api.example.test", "/", {"x-canary": "true"}, "canary"),  # first match wins
        ("other.test", "/", {"X-Canary": "true"}, "canary"),
        ("other.test", "/", {"x-canary": "false"}, "web"),
    ],
)
async def test_route_picks_the_pool(
    backends: StartBackends,
    proxy: StartProxy,
    host: str,
    path: str,
    headers: dict[str, str],
    pool: str,
) -> None:
    p = await routed(backends, proxy, ROUTES)
    async with raw_client(p) as client:
        resp = await client.get(path, {"Host": host, **headers})
        assert resp.status == 200, resp.head
        assert resp.headers["x-backend"] == pool


async def test_absolute_form_target_routes_on_its_authority(
    backends: StartBackends, proxy: StartProxy
) -> None:
    p = await routed(backends, proxy, ROUTES)
    async with raw_client(p) as client:
        await client.send(b"GET http://api.example.test/x HTTP/1.1\r\nHost: other.test\r\n\r\n")
        resp = await client.response()
        assert resp.headers["x-backend"] == "api"


async def test_more_matchers(backends: StartBackends, proxy: StartProxy) -> None:
    routes = [
        {"match": {"path_exact": "/exact"}, "pool": "a"},
        {"match": {"path_regex": r"/items/[0-9]+"}, "pool": "b"},
        {"match": {"methods": ["POST"], "path_prefix": "/m"}, "pool": "c"},
        {"match": {"query": {"tier": "gold"}}, "pool": "d"},
        {"match": {"cookies": {"beta": {"present": True}}}, "pool": "e"},
        {"match": {"headers": {"x-version": {"regex": "^2\\."}}}, "pool": "f"},
        {"pool": "web"},
    ]
    p = await routed(backends, proxy, routes, ("a", "b", "c", "d", "e", "f", "web"))
    cases = [
        ("GET", "/exact", {}, "a"),
        ("GET", "/exact/", {}, "web"),
        ("GET", "/items/42", {}, "b"),
        ("GET", "/items/42x", {}, "web"),  # path_regex is a full match
        ("POST", "/m/x", {}, "c"),
        ("GET", "/m/x", {}, "web"),
        ("GET", "/q?x=1&tier=gold", {}, "d"),
        ("GET", "/q?tier=silver", {}, "web"),
        ("GET", "/c", {"Cookie": "a=1; beta=yes"}, "e"),
        ("GET", "/c", {"Cookie": "a=1"}, "web"),
        ("GET", "/h", {"X-Version": "2.7"}, "f"),
        ("GET", "/h", {"X-Version": "1.2"}, "web"),
    ]
    async with raw_client(p) as client:
        for method, target, headers, pool in cases:
            resp = await client.request(method, target, headers, b"x" if method == "POST" else b"")
            assert resp.headers.get("x-backend") == pool, (method, target, headers, resp.head)


async def test_404_with_a_short_body_when_no_route_matches(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (api,) = await backends("api")
    p = await proxy(
        config(
            {"api": {"backends": [api.address]}},
            routes=[{"match": {"host": "api.example.test"}, "pool": "api"}],
        )
    )
    async with raw_client(p) as client:
        resp = await client.get("/nothing/here", {"Host": "elsewhere.test"})
        assert resp.status == 404
        assert 0 < len(resp.body) < 200, resp.body
        assert "x-backend" not in resp.headers
        assert resp.headers.get("connection", "").lower() != "close", resp.head
        # a 404 is an answer, not a broken connection: the next request is served
        resp = await client.get("/", {"Host": "api.example.test"})
        assert (resp.status, resp.headers["x-backend"]) == (200, "api")
    assert api.requests == 1


async def test_weighted_split_counts(backends: StartBackends, proxy: StartProxy) -> None:
    blue, green = await backends("blue", "green")
    p = await proxy(
        config(
            {"blue": {"backends": [blue.address]}, "green": {"backends": [green.address]}},
            routes=[{"split": [{"pool": "blue", "weight": 3}, {"pool": "green", "weight": 1}]}],
        )
    )
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        counts: collections.Counter[str] = collections.Counter()
        for i in range(400):
            counts[(await c.get(f"/s/{i}")).headers["x-backend"]] += 1
    assert counts == {"blue": 300, "green": 100}


async def test_split_with_a_zero_weight_branch_never_uses_it(
    backends: StartBackends, proxy: StartProxy
) -> None:
    live, off = await backends("live", "off")
    p = await proxy(
        config(
            {"live": {"backends": [live.address]}, "off": {"backends": [off.address]}},
            routes=[{"split": [{"pool": "live", "weight": 1}, {"pool": "off", "weight": 0}]}],
        )
    )
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        for _ in range(20):
            assert (await c.get("/")).headers["x-backend"] == "live"
    assert off.requests == 0


async def test_request_header_rewrite(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config(
            {"p": {"backends": [a.address]}},
            routes=[
                {
                    "pool": "p",
                    "request_headers": {
                        "set": {"x-route": "api-v1", "X-Tenant": "acme"},
                        "add": {"x-tag": "from-evenflow"},
                        "remove": ["x-internal", "X-Debug"],
                    },
                }
            ],
        )
    )
    async with raw_client(p) as client:
        resp = await client.get(
            "/echo",
            {
                "X-Route": "client-value",
                "X-Tag": "client-tag",
                "X-Internal": "secret",
                "x-debug": "1",
                "X-Other": "kept",
            },
        )
        got = echo_headers(resp)
        assert values(got, "x-route") == ["api-v1"]
        assert values(got, "x-tenant") == ["acme"]
        assert values(got, "x-tag") == ["client-tag", "from-evenflow"]
        assert values(got, "x-internal") == [] and values(got, "x-debug") == []
        assert values(got, "x-other") == ["kept"]
        # evenflow's own headers are still there after a rewrite
        assert values(got, "x-forwarded-for") == ["127.0.0.1"]
        assert len(values(got, "x-request-id")) == 1
        assert values(got, "host") == ["test.local"]


async def test_response_header_rewrite(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config(
            {"p": {"backends": [a.address]}},
            routes=[
                {
                    "pool": "p",
                    "response_headers": {
                        "set": {"x-served-by": "evenflow", "content-type": "text/x-rewritten"},
                        "add": {"x-backend": "second-value"},
                        "remove": ["x-nothing"],
                    },
                }
            ],
        )
    )
    async with raw_client(p) as client:
        for _ in range(2):
            resp = await client.get("/r")
            assert resp.status == 200
            assert resp.body == b"backend a: GET /r\n"
            lines = header_lines(resp.head)
            assert values(lines, "x-served-by") == ["evenflow"]
            assert values(lines, "content-type") == ["text/x-rewritten"]
            assert values(lines, "x-backend") == ["a", "second-value"]
