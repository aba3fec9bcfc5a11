"""HTTP/2 from clients over real sockets (h2c with prior knowledge): many streams on one
connection, each routed and balanced on its own; HTTP/1.1 on the same listener unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from h2_support import Proxy, config, raw_h2

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(30)

StartBackends = Callable[..., Awaitable[list[DemoBackend]]]
StartProxy = Callable[[dict[str, Any]], Awaitable[Proxy]]


def two_pools(a: DemoBackend, b: DemoBackend) -> dict[str, Any]:
    return config(
        {"a": {"backends": [a.address]}, "b": {"backends": [b.address]}},
        routes=[{"match": {"path_prefix": "/b/"}, "pool": "b"}, {"pool": "a"}],
    )


async def test_concurrent_streams_on_one_connection_reach_two_pools(
    backends: StartBackends, proxy: StartProxy
) -> None:
    a, b = await backends("a", "b")
    p = await proxy(two_pools(a, b))
    paths = [f"/b/{i}" if i % 2 else f"/a/{i}" for i in range(200)]
    async with httpx.AsyncClient(http2=True, http1=False, base_url=p.url, timeout=10) as client:
        responses = await asyncio.gather(*(client.get(path) for path in paths))
    assert all(r.http_version == "HTTP/2" and r.status_code == 200 for r in responses)
    for path, response in zip(paths, responses, strict=True):
        assert response.headers["x-backend"] == ("b" if path.startswith("/b/") else "a")
        assert response.text == f"backend {response.headers['x-backend']}: GET {path}\n"
    assert (a.requests, b.requests) == (100, 100)
    stats = p.ctx.http2
    assert stats is not None and (stats.connections, stats.streams) == (1, 200)
    assert p.ctx.opened == 1  # one client connection, counted once


async def test_streams_in_flight_at_once_are_answered_independently(
    backends: StartBackends, proxy: StartProxy
) -> None:
    a, b = await backends("a", "b")
    p = await proxy(two_pools(a, b))
    async with raw_h2(p.port) as client:
        slow = client.start("/b/slow?delay=400")
        fast = [client.start(f"/a/{i}") for i in range(10)]
        await client.receive(lambda: all(client.done(s) for s in fast))
        assert not client.done(slow)  # the fast ones did not wait behind it
        await client.receive(lambda: client.done(slow))
        assert client.answer(slow).headers[b"x-backend"] == b"b"
        assert {client.answer(s).headers[b"x-backend"] for s in fast} == {b"a"}


async def test_streams_one_after_another_are_each_served_as_new(
    backends: StartBackends, proxy: StartProxy
) -> None:
    """A finished stream's HTTP/1.1 side serves the next stream: nothing of one request
    (its route, body, fields, a reset) may reach the next."""
    a, b = await backends("a", "b")
    p = await proxy(two_pools(a, b))
    async with raw_h2(p.port) as client:
        request_ids = []
        for i in range(3):
            first = await client.request(f"/b/{i}", ("x-only-once", str(i)))
            posted = await client.request("/echo", method="POST", body=b"x" * (1000 + i))
            cut = client.start("/b/slow?delay=300")
            client.conn.reset_stream(cut)  # a stream left mid-answer is let go
            client.flush()
            echoed = await client.request("/echo?after")
            assert first.headers[b"x-backend"] == b"b"
            assert posted.headers[b"x-backend"] == echoed.headers[b"x-backend"] == b"a"
            body = json.loads(posted.body)
            assert (body["method"], body["body_bytes"]) == ("POST", 1000 + i)
            after = json.loads(echoed.body)
            assert (after["method"], after["path"], after["body_bytes"]) == (
                "GET",
                "/echo?after",
                0,
            )
            names = [n.lower() for n, _ in after["headers"]]
            assert "x-only-once" not in names and "content-length" not in names
            assert names.count("x-forwarded-for") == 1
            request_ids.append(dict((n.lower(), v) for n, v in after["headers"])["x-request-id"])
        assert len(set(request_ids)) == 3
    assert a.requests == 6


async def test_http11_on_the_same_listener_is_unchanged(
    backends: StartBackends, proxy: StartProxy
) -> None:
    a, b = await backends("a", "b")
    p = await proxy(two_pools(a, b))
    async with httpx.AsyncClient(base_url=p.url, timeout=10) as client:
        response = await client.get("/b/x")
    assert response.http_version == "HTTP/1.1"
    assert response.headers["x-backend"] == "b"
    assert p.ctx.http2 is None  # no HTTP/2 connection yet


async def test_request_fields_reach_the_backend_as_http11(
    backends: StartBackends, proxy: StartProxy
) -> None:
    a, b = await backends("a", "b")
    p = await proxy(two_pools(a, b))
    async with raw_h2(p.port) as client:
        answer = await client.request(
            "/echo?q=1",
            ("cookie", "a=1"),
            ("x-custom", "v"),
            ("cookie", "b=2"),
            ("te", "trailers"),
        )
    echoed = [(n.lower(), v) for n, v in json.loads(answer.body)["headers"]]
    names = [n for n, _ in echoed]
    assert ("host", "test.local") in echoed
    assert ("cookie", "a=1; b=2") in echoed  # RFC 9113 §8.2.3: crumbs joined
    assert ("x-custom", "v") in echoed
    assert "te" not in names and "transfer-encoding" not in names
    assert ("x-forwarded-proto", "http") in echoed
    assert answer.headers[b":status"] == b"200"


async def test_the_access_log_has_one_line_per_stream(
    backends: StartBackends, proxy: StartProxy, tmp_path: Any
) -> None:
    a, b = await backends("a", "b")
    p = await proxy(two_pools(a, b))
    async with httpx.AsyncClient(http2=True, http1=False, base_url=p.url, timeout=10) as client:
        await asyncio.gather(client.get("/a/1"), client.get("/b/2"))
    await asyncio.sleep(0.5)  # the access log is flushed a few times a second
    lines = [json.loads(x) for x in (tmp_path / "access.log").read_text().splitlines()]
    assert sorted((line["path"], line["pool"]) for line in lines) == [("/a/1", "a"), ("/b/2", "b")]
