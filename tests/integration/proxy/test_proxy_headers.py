"""Headers: hop-by-hop removed both ways, forwarding headers added, X-Request-Id kept or made."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from proxy_support import (
    CountingBackend,
    Proxy,
    StartBackends,
    StartProxy,
    StartRawServer,
    build_request,
    config,
    echo_headers,
    header_lines,
    raw_client,
    read_request,
    values,
)

pytestmark = pytest.mark.timeout(30)

HOP_BY_HOP = ("connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection")


async def one_backend_proxy(
    backends: StartBackends, proxy: StartProxy
) -> tuple[CountingBackend, Proxy]:
    (a,) = await backends("a")
    return a, await proxy(config({"p": {"backends": [a.address]}}, pool="p"))


async def test_request_hop_by_hop_headers_are_removed(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get(
            "/echo",
            {
                "Connection": "keep-alive, X-Hop-Named, x-other-named",
                "X-Hop-Named": "secret",
                "X-Other-Named": "also",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Trailer": "X-Digest",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "Proxy-Connection": "keep-alive",
                "Proxy-Whatever": "1",
                "X-Kept": "yes",
            },
        )
        assert resp.status == 200
        got = echo_headers(resp)
        names = {n for n, _ in got}
        for name in (*HOP_BY_HOP, "x-hop-named", "x-other-named"):
            assert name not in names, f"{name} was forwarded: {got}"
        assert not [n for n in names if n.startswith("proxy-")], got
        assert values(got, "x-kept") == ["yes"]
        # the client connection is still keep-alive
        assert (await client.get("/after")).status == 200


async def test_request_upgrade_header_is_removed(
    backends: StartBackends, proxy: StartProxy
) -> None:
    # only a WebSocket handshake keeps its Upgrade (RFC 6455); any other upgrade is hop-by-hop
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get("/echo", {"Upgrade": "h2c", "Connection": "Upgrade"})
        assert resp.status == 200
        names = {n for n, _ in echo_headers(resp)}
        assert "upgrade" not in names and "connection" not in names, names


async def test_websocket_handshake_keeps_upgrade_and_a_declined_one_keeps_the_connection(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        # the demo backend answers 200: a declined handshake, the connection stays HTTP
        resp = await client.get("/echo", {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert resp.status == 200
        sent = dict(echo_headers(resp))
        assert sent.get("upgrade") == "websocket" and sent.get("connection") == "upgrade", sent
        again = await client.get("/echo")
        assert again.status == 200


async def test_response_hop_by_hop_headers_are_removed(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\n"
                b"Connection: keep-alive, X-Backend-Hop\r\n"
                b"X-Backend-Hop: internal\r\n"
                b"Keep-Alive: timeout=30, max=100\r\n"
                b"Proxy-Authenticate: Basic realm=x\r\n"
                b"Proxy-Connection: keep-alive\r\n"
                b"Upgrade: h2c\r\n"
                b"TE: trailers\r\n"
                b"Trailer: X-Nothing\r\n"
                b"X-End-To-End: kept\r\n"
                b"Content-Length: 2\r\n\r\nok"
            )
            await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        for _ in range(2):
            resp = await client.get("/r")
            assert (resp.status, resp.body) == (200, b"ok")
            names = {n for n, _ in header_lines(resp.head)}
            for name in ("keep-alive", "te", "trailer", "upgrade", "x-backend-hop"):
                assert name not in names, f"{name} reached the client: {resp.head!r}"
            assert not [n for n in names if n.startswith("proxy-")], resp.head
            # a Connection header may only carry evenflow's own options, never the backend's list
            for value in values(header_lines(resp.head), "connection"):
                assert "x-backend-hop" not in value.lower(), resp.head
            assert resp.headers["x-end-to-end"] == "kept"


async def test_forwarding_headers_on_a_plain_request(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get("/echo", {"Host": "shop.example.test:8080"})
        got = echo_headers(resp)
        assert values(got, "host") == ["shop.example.test:8080"]
        assert values(got, "x-forwarded-for") == ["127.0.0.1"]
        assert values(got, "x-forwarded-proto") == ["http"]
        assert values(got, "x-forwarded-host") == ["shop.example.test:8080"]
        via = values(got, "via")
        assert len(via) == 1 and via[0].startswith("1.1 ") and "evenflow" in via[0], via


async def test_x_forwarded_for_is_appended_to_the_clients(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get("/echo", {"X-Forwarded-For": "203.0.113.7, 198.51.100.2"})
        assert values(echo_headers(resp), "x-forwarded-for") == [
            "203.0.113.7, 198.51.100.2, 127.0.0.1"
        ]
        # two X-Forwarded-For lines are one list (RFC 9110 §5.3), the client's address last
        await client.send(
            b"GET /echo HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"X-Forwarded-For: 198.51.100.2\r\n\r\n"
        )
        resp = await client.response()
        forwarded = values(echo_headers(resp), "x-forwarded-for")
        assert ", ".join(forwarded) == "203.0.113.7, 198.51.100.2, 127.0.0.1", forwarded


async def test_client_cannot_forge_forwarded_proto_and_host(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get(
            "/echo",
            {
                "Host": "real.example.test",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "forged.example.test",
            },
        )
        got = echo_headers(resp)
        assert values(got, "x-forwarded-proto") == ["http"], got
        assert values(got, "x-forwarded-host") == ["real.example.test"], got


async def test_via_is_added_to_an_existing_via(backends: StartBackends, proxy: StartProxy) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get("/echo", {"Via": "1.1 edge-cdn"})
        via = ", ".join(values(echo_headers(resp), "via"))
        assert via.startswith("1.1 edge-cdn, "), via
        assert "evenflow" in via


async def test_request_id_is_kept_when_sent(backends: StartBackends, proxy: StartProxy) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        resp = await client.get("/echo", {"X-Request-Id": "client-chosen-42"})
        assert values(echo_headers(resp), "x-request-id") == ["client-chosen-42"]
        # also when something else makes evenflow rebuild the head
        resp = await client.get(
            "/echo", {"X-Request-Id": "client-chosen-43", "X-Forwarded-For": "192.0.2.1"}
        )
        assert values(echo_headers(resp), "x-request-id") == ["client-chosen-43"]


async def test_request_id_is_generated_when_absent_and_unique(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    ids = []
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        for _ in range(20):
            r = await c.get("/echo")
            got = values(echo_headers_httpx(r), "x-request-id")
            assert len(got) == 1 and got[0].strip(), got
            ids.append(got[0])
    assert len(set(ids)) == 20


def echo_headers_httpx(r: httpx.Response) -> list[tuple[str, str]]:
    return [(n.lower(), v) for n, v in r.json()["headers"]]


async def test_http10_client_gets_forwarding_headers_and_via_10(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        await client.send(b"GET /echo HTTP/1.0\r\nHost: old.example.test\r\n\r\n")
        resp = await client.response()
        assert resp.status == 200
        got = echo_headers(resp)
        assert values(got, "x-forwarded-for") == ["127.0.0.1"]
        via = values(got, "via")
        assert len(via) == 1 and via[0].startswith("1.0 ") and "evenflow" in via[0], via


async def test_a_request_line_is_forwarded_as_sent_only_when_it_says_http_1_1(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    request_lines = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _, _ = await read_request(reader)
            request_lines.append(head.split(b"\r\n", 1)[0])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        for line in (b"GET /a?q=1 HTTP/1.1", b"GET /a?q=1 HTTP/1.2", b"DELETE /b HTTP/1.1"):
            await client.send(line + b"\r\nHost: h.example.test\r\n\r\n")
            resp = await client.response()
            assert (resp.status, resp.body) == (200, b"ok")
    # a higher minor version is served as 1.1 (RFC 9110 §2.5), and said so to the backend
    assert request_lines == [b"GET /a?q=1 HTTP/1.1", b"GET /a?q=1 HTTP/1.1", b"DELETE /b HTTP/1.1"]


async def test_end_to_end_headers_pass_unchanged_in_order(
    backends: StartBackends, proxy: StartProxy
) -> None:
    _, p = await one_backend_proxy(backends, proxy)
    async with raw_client(p) as client:
        await client.send(
            build_request(
                "GET",
                "/echo",
                {"X-B": "2", "Cookie": "a=1; b=2", "X-A": "1", "Accept": "*/*"},
            )
        )
        got = echo_headers(await client.response())
        mine = [(n, v) for n, v in got if n in ("x-b", "cookie", "x-a", "accept")]
        assert mine == [("x-b", "2"), ("cookie", "a=1; b=2"), ("x-a", "1"), ("accept", "*/*")]
