"""Bodies both ways: Content-Length and chunked, trailers, 100-continue, HEAD, 204 and 304."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from proxy_support import (
    StartBackends,
    StartProxy,
    StartRawServer,
    StartRecorder,
    build_request,
    config,
    expected_body,
    raw_client,
    read_request,
    sha256,
)

pytestmark = pytest.mark.timeout(30)


def pattern(size: int) -> bytes:
    """A body whose every byte depends on its position, so a lost or repeated piece shows."""
    block = hashlib.sha256(b"evenflow").digest() * 2048  # 64 KiB
    out = bytearray()
    i = 0
    while len(out) < size:
        out += i.to_bytes(4, "big") + block[4:]
        i += 1
    return bytes(out[:size])


async def test_content_length_upload_reaches_backend_intact(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    body = pattern(3 * 1024 * 1024 + 7)
    async with httpx.AsyncClient(base_url=p.url, timeout=10) as c:
        r = await c.post("/echo", content=body)
        assert r.status_code == 200
        echo = r.json()
        assert echo["body_bytes"] == len(body)
        assert echo["body_sha256"] == sha256(body)
        assert ["Content-Length", str(len(body))] in [[n.title(), v] for n, v in echo["headers"]]
        # and the same connection carries the next request
        r = await c.get("/after")
        assert r.text == "backend a: GET /after\n"


async def test_chunked_upload_reaches_backend_intact(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    body = pattern(2 * 1024 * 1024 + 3)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]
            await asyncio.sleep(0)

    async with httpx.AsyncClient(base_url=p.url, timeout=10) as c:
        r = await c.post("/echo", content=pieces())
        assert r.status_code == 200
        echo = r.json()
        sent = {n.lower(): v for n, v in echo["headers"]}
        assert sent.get("transfer-encoding") == "chunked"
        assert echo["body_bytes"] == len(body)
        assert echo["body_sha256"] == sha256(body)


async def test_chunked_upload_trailers_are_forwarded(
    recorder: StartRecorder, proxy: StartProxy
) -> None:
    rec = await recorder()
    p = await proxy(config({"p": {"backends": [rec.address]}}, pool="p"))
    async with raw_client(p) as client:
        await client.send(
            b"POST /up HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: X-Digest\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Digest: abc123\r\n\r\n"
        )
        resp = await client.response()
        assert resp.status == 200
        assert resp.body == b"recorded\n"
    forwarded = rec.received().lower()
    assert b"x-digest: abc123\r\n" in forwarded.split(b"\r\n0\r\n", 1)[-1], forwarded
    assert b"hello" in forwarded and b" world" in forwarded


async def test_content_length_download(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    size = 5 * 1024 * 1024 + 11
    async with httpx.AsyncClient(base_url=p.url, timeout=10) as c:
        r = await c.get(f"/big?size={size}")
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        assert len(r.content) == size
        assert r.content == expected_body(size)


async def test_chunked_download(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    size = 300_001
    async with raw_client(p) as client:
        resp = await client.get(f"/big?size={size}&chunked=1")
        assert resp.status == 200
        assert resp.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in resp.headers
        assert resp.body == expected_body(size)
        again = await client.get("/after")
        assert again.body == b"backend a: GET /after\n"


async def test_chunked_download_trailers_are_relayed(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: X-Checksum, X-Count\r\n\r\n"
                b"6\r\nhello \r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.05)  # the trailers arrive in a later read than the head
            writer.write(b"5\r\nworld\r\n0\r\nX-Checksum: 5eb63bbbe0\r\nX-Count: 2\r\n\r\n")
            await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        resp = await client.get("/t")
        assert resp.status == 200
        assert resp.body == b"hello world"
        assert ("x-checksum", "5eb63bbbe0") in resp.trailers, resp.trailers
        assert ("x-count", "2") in resp.trailers, resp.trailers
        again = await client.get("/t2")
        assert again.body == b"hello world"


async def test_expect_100_continue_gets_100_then_200(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    body = pattern(200_000)
    async with raw_client(p) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: test.local\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        # the client waits for the go-ahead before sending the body
        interim = await client.read_head(timeout=3)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        await client.send(body)
        resp = await client.response()
        assert resp.status == 200
        assert resp.json()["body_sha256"] == sha256(body)
        assert resp.interim == []
        again = await client.get("/after")
        assert again.body == b"backend a: GET /after\n"


async def test_expect_100_continue_with_httpx_body_is_intact(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    body = pattern(100_000)
    async with httpx.AsyncClient(base_url=p.url, timeout=10) as c:
        r = await c.post("/echo", content=body, headers={"Expect": "100-continue"})
        assert r.status_code == 200
        assert r.json()["body_sha256"] == sha256(body)


async def test_head_has_no_body_and_connection_stays_usable(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    async with raw_client(p) as client:
        for i, target in enumerate(("/h", "/h?size=100000", "/h?size=100000&chunked=1")):
            head = await client.request("HEAD", target)
            assert head.status == 200, head.head
            assert head.headers["x-backend"] == "a"
            if "chunked" not in target:
                expected = 100000 if "size" in target else len(b"backend a: HEAD /h\n")
                assert head.headers.get("content-length") == str(expected), head.head
            # nothing follows the head: the next response must start right away
            resp = await client.get(f"/after/{i}")
            assert resp.status == 200, resp.head
            assert resp.body == f"backend a: GET /after/{i}\n".encode()
        assert await client.nothing_more() == b""


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_status_has_no_body(
    backends: StartBackends, proxy: StartProxy, status: int
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    async with raw_client(p) as client:
        resp = await client.get(f"/x?status={status}")
        assert resp.status == status
        assert "transfer-encoding" not in resp.headers, resp.head
        resp = await client.get("/next")
        assert resp.status == 200, resp.head
        assert resp.body == b"backend a: GET /next\n"
        assert await client.nothing_more() == b""


async def test_304_with_content_length_of_the_full_resource_has_no_body(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    # RFC 9110 §8.6: a 304 may carry the Content-Length the 200 would have had; no body follows
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, headers, _ = await read_request(reader)
            if "if-none-match" in headers:
                writer.write(
                    b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5000\r\n\r\n'
                )
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        resp = await client.get("/r", {"If-None-Match": '"v1"'})
        assert resp.status == 304
        resp = await client.get("/r")
        assert (resp.status, resp.body) == (200, b"ok")
    assert srv.accepted == 1


async def test_request_body_in_pieces_with_content_length(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    body = pattern(50_000)
    async with raw_client(p) as client:
        await client.send(build_request("POST", "/echo", {"Content-Length": str(len(body))}))
        for i in range(0, len(body), 7_000):
            await client.send(body[i : i + 7_000])
            await asyncio.sleep(0.01)
        resp = await client.response()
        assert resp.json()["body_sha256"] == sha256(body)


async def test_http10_client_gets_a_chunked_response_unchunked(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    async with raw_client(p) as client:
        await client.send(b"GET /big?size=70000&chunked=1 HTTP/1.0\r\nHost: test.local\r\n\r\n")
        head = await client.read_head()
        assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), head
        assert b"transfer-encoding" not in head.lower(), head
        body = await asyncio.wait_for(client.reader.read(), 5)  # until close (RFC 9112 §6.3)
        assert body == expected_body(70000)


async def test_response_without_framing_reaches_the_client_whole(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    # RFC 9112 §6.3 rule 8: no Content-Length, no chunked: the body ends when the backend closes
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"the end")
        await writer.drain()

    srv = await raw_server(backend)
    p = await proxy(config({"p": {"backends": [srv.address]}}, pool="p"))
    async with raw_client(p) as client:
        resp = await client.get("/u")
        assert (resp.status, resp.body) == (200, b"until the end")
        if "close" not in resp.headers.get("connection", "").lower():
            # kept alive: the next request must work on the same connection
            resp = await client.get("/u2")
            assert (resp.status, resp.body) == (200, b"until the end")
