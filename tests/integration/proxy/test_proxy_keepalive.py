"""Keep-alive on both sides and pipelining: one client connection, few backend connections."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from proxy_support import (
    StartBackends,
    StartProxy,
    StartRawServer,
    Timer,
    build_request,
    config,
    raw_client,
    read_request,
)

pytestmark = pytest.mark.timeout(30)


async def test_many_requests_on_one_client_connection_reuse_one_backend_connection(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    async with raw_client(p) as client:
        for i in range(50):
            resp = await client.get(f"/n/{i}")
            assert resp.status == 200, resp.head
            assert resp.headers["x-backend"] == "a"
            assert resp.body == f"backend a: GET /n/{i}\n".encode()
            assert "close" not in resp.headers.get("connection", "").lower()
        assert await client.nothing_more() == b"", "bytes after the last response"
    assert a.requests == 50
    # sequential requests need one backend connection, kept alive and reused
    assert a.accepted == 1, f"the backend accepted {a.accepted} connections for 50 requests"


async def test_httpx_keep_alive_over_three_backends(
    backends: StartBackends, proxy: StartProxy
) -> None:
    bs = await backends("a", "b", "c")
    p = await proxy(config({"p": {"backends": [b.address for b in bs]}}, pool="p"))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=p.url, limits=limits, timeout=5) as c:
        seen = []
        for i in range(60):
            r = await c.get(f"/k/{i}")
            assert r.status_code == 200
            seen.append(r.headers["x-backend"])
            assert r.text == f"backend {seen[-1]}: GET /k/{i}\n"
    assert seen == ["a", "b", "c"] * 20
    for b in bs:
        assert b.requests == 20
        assert b.accepted == 1, f"backend {b.name} accepted {b.accepted} connections"


async def test_concurrent_clients_share_a_bounded_set_of_backend_connections(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=p.url, limits=limits, timeout=10) as c:

        async def worker(w: int) -> None:
            for i in range(25):
                r = await c.get(f"/w{w}/{i}")
                assert r.status_code == 200
                assert r.text == f"backend a: GET /w{w}/{i}\n"

        await asyncio.gather(*(worker(w) for w in range(8)))
    assert a.requests == 200
    # at most one backend connection per concurrent request (8), never one per request
    assert a.accepted <= 8, f"{a.accepted} backend connections for 200 requests, 8 at a time"


async def test_pipelined_requests_are_answered_in_order(
    backends: StartBackends, proxy: StartProxy
) -> None:
    bs = await backends("a", "b", "c")
    p = await proxy(config({"p": {"backends": [b.address for b in bs]}}, pool="p"))
    async with raw_client(p) as client:
        await client.send(b"".join(build_request("GET", f"/pipe/{i}") for i in range(9)))
        bodies = [(await client.response()).body for _ in range(9)]
        expected = [f"backend {'abc'[i % 3]}: GET /pipe/{i}\n".encode() for i in range(9)]
        assert bodies == expected
        # and the connection is still good afterwards
        resp = await client.get("/after")
        assert resp.status == 200
        assert resp.body.endswith(b"GET /after\n")


async def test_pipelined_slow_request_first_still_answered_first(
    backends: StartBackends, proxy: StartProxy
) -> None:
    bs = await backends("a", "b")
    p = await proxy(config({"p": {"backends": [b.address for b in bs]}}, pool="p"))
    async with raw_client(p) as client:
        timer = Timer()
        await client.send(
            build_request("GET", "/slow?delay=400")
            + build_request("GET", "/fast/1")
            + build_request("POST", "/echo", body=b"pipelined body")
            + build_request("GET", "/fast/2")
        )
        first = await client.response()
        assert first.status == 200
        assert first.body.endswith(b"GET /slow?delay=400\n"), first.body
        assert timer.elapsed >= 0.4
        second = await client.response()
        assert second.body.endswith(b"GET /fast/1\n"), second.body
        third = await client.response()
        assert third.json()["body_bytes"] == len(b"pipelined body")
        fourth = await client.response()
        assert fourth.body.endswith(b"GET /fast/2\n"), fourth.body
        assert timer.elapsed < 3
        assert await client.nothing_more() == b""


async def test_pipelined_requests_in_one_write_with_connection_close_last(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    async with raw_client(p) as client:
        await client.send(
            build_request("GET", "/one")
            + build_request("GET", "/two")
            + build_request("GET", "/three", {"Connection": "close"})
        )
        got = [await client.response() for _ in range(3)]
        assert [r.body for r in got] == [
            b"backend a: GET /one\n",
            b"backend a: GET /two\n",
            b"backend a: GET /three\n",
        ]
        assert got[2].headers.get("connection", "").lower() == "close"
        assert await client.is_closed_by_peer(2)


async def test_idle_backend_connections_are_bounded_by_max_idle_connections(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address], "max_idle_connections": 2}}, pool="p"))
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=p.url, limits=limits, timeout=10) as c:
        # eight at once need eight backend connections; afterwards only two may stay open
        rs = await asyncio.gather(*(c.get(f"/burst/{i}?delay=200") for i in range(8)))
        assert [r.status_code for r in rs] == [200] * 8
        assert a.accepted == 8
        await asyncio.sleep(0.3)
        assert len(a.connections_open) == 2, f"{len(a.connections_open)} backend connections open"
        # and the two kept are the ones reused next
        for i in range(6):
            assert (await c.get(f"/again/{i}")).status_code == 200
        assert a.accepted == 8


async def test_idle_backend_connection_is_closed_after_the_pool_idle_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config({"p": {"backends": [a.address], "timeouts": {"idle": "300ms"}}}, pool="p")
    )
    async with raw_client(p) as client:
        assert (await client.get("/one")).status == 200
        assert len(a.connections_open) == 1
        timer = Timer()
        while a.connections_open and timer.elapsed < 3:
            await asyncio.sleep(0.02)
        assert not a.connections_open, "idle backend connection still open after 3s"
        assert 0.25 <= timer.elapsed <= 1.0, f"closed after {timer.elapsed:.2f}s, idle is 300ms"
        # the client connection is unaffected: the next request opens a new backend connection
        assert (await client.get("/two")).status == 200
    assert a.accepted == 2


async def test_response_heads_of_any_size_on_one_backend_connection_arrive_whole(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    # evenflow reads a response head from a window about the previous head's size: heads that
    # grow past it, outgrow any window, shrink again, or follow an interim response on the same
    # connection, with bodies that look like heads, must each arrive as sent
    answers = [
        (b"", b"body\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
        (b"X-Grown: " + b"g" * 300 + b"\r\n", b"second"),
        (b"X-Huge: " + b"h" * 6000 + b"\r\n", b"\r\n\r\n"),
        (b"", b"small again"),
        (b"Connection: keep-alive\r\n", b"x" * 3000),
        (b"TE: trailers\r\nX-After: 1\r\n", b"hop-by-hop"),
    ]

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n, (fields, body) in enumerate(answers):
            await read_request(reader)
            interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" if n == 3 else b""
            writer.write(
                interim
                + b"HTTP/1.1 200 OK\r\nX-N: %d\r\n%sContent-Length: %d\r\n\r\n%s"
                % (n, fields, len(body), body)
            )
            await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        for n, (fields, body) in enumerate(answers):
            resp = await client.get(f"/{n}")
            assert resp.status == 200, resp.head
            assert resp.headers["x-n"] == str(n)
            assert resp.body == body
            if fields.startswith(b"X-"):
                name, _, value = fields.partition(b": ")
                assert resp.headers[name.decode().lower()] == value[:-2].decode()
            assert "te" not in resp.headers
        assert resp.headers["x-after"] == "1"
    assert srv.accepted == 1


async def test_a_repeated_response_head_is_read_as_the_first_one_was(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    # a backend connection remembers its previous response head and what it meant; the same
    # bytes again must frame the same way, and a HEAD's identical head must carry no body
    head = b"HTTP/1.1 200 OK\r\nX-Same: 1\r\nContent-Length: 5\r\n\r\n"
    answers = [
        head + b"first",
        head + b"again",
        head,  # to a HEAD: the same head, and no body follows
        head + b"after",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + head + b"hints",
        head[:-2] + b"X-Longer: 1\r\n\r\n" + b"other",
        head + b"back!",
    ]
    methods = ["GET", "GET", "HEAD", "GET", "GET", "GET", "GET"]

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        for n, (method, answer) in enumerate(zip(methods, answers, strict=True)):
            resp = await client.request(method, f"/{n}")
            assert resp.status == 200, resp.head
            assert resp.headers["x-same"] == "1"
            assert resp.headers["content-length"] == "5"
            assert resp.body == (b"" if method == "HEAD" else answer[-5:])
            assert ("x-longer" in resp.headers) == (n == 5)
        assert await client.nothing_more() == b"", "bytes after the last response"
    assert srv.accepted == 1


async def test_a_repeated_empty_response_to_a_head_request_is_still_a_head_response(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    # a whole response the size of the previous one and beginning with its head skips llhttp;
    # with Content-Length: 0 a HEAD's response is exactly that, and must still end as one
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    methods = ["GET", "GET", "HEAD", "GET", "HEAD", "HEAD", "GET"]
    split = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in methods:
            await read_request(reader)
            writer.write(head)
            await writer.drain()
        for _ in range(3):  # then a head whose body comes in a later read, three times
            await read_request(reader)
            writer.write(split)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"body")
            await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        for n, method in enumerate(methods):
            resp = await client.request(method, f"/{n}")
            assert (resp.status, resp.headers["content-length"], resp.body) == (200, "0", b"")
        for n in range(3):
            resp = await client.get(f"/split/{n}")
            assert (resp.status, resp.body) == (200, b"body")
        assert await client.nothing_more() == b"", "bytes after the last response"
    assert srv.accepted == 1
