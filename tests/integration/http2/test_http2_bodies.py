"""Bodies over HTTP/2: large downloads and uploads intact, flow control as backpressure (a client
that does not read makes evenflow hold a bounded amount), trailers both ways, gRPC-shaped
errors for the calls evenflow itself answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from h2.events import ResponseReceived
from h2_support import Proxy, config, expected_sha256, raw_h2, scripted_backend

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(60)

StartBackends = Callable[..., Awaitable[list[DemoBackend]]]
StartProxy = Callable[[dict[str, Any]], Awaitable[Proxy]]
MIB = 1024 * 1024


async def test_large_download_arrives_intact(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    size = 20 * MIB + 123
    async with httpx.AsyncClient(http2=True, http1=False, base_url=p.url, timeout=30) as client:
        digest = hashlib.sha256()
        async with client.stream("GET", f"/file?size={size}") as response:
            assert response.http_version == "HTTP/2"
            assert int(response.headers["content-length"]) == size
            async for piece in response.aiter_raw():
                digest.update(piece)
    assert digest.hexdigest() == expected_sha256(size)


async def test_a_client_that_does_not_read_makes_evenflow_hold_little(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    size = 8 * MIB
    async with raw_h2(p.port, window=65535) as client:
        sid = client.start(f"/file?size={size}")
        await client.receive(lambda: client.conn.inbound_flow_control_window == 0, timeout=5)
        await asyncio.sleep(0.5)  # the backend keeps sending, if nothing holds it back
        (conn,) = p.ctx.connections
        (stream,) = conn.streams.values()  # type: ignore[attr-defined]
        held = stream.get_write_buffer_size()
        # the stream's high-water mark plus what one backend read may add past it
        assert held <= 64 * 1024 + 512 * 1024
        # reading resumes the flow: everything arrives, in order
        while not client.done(sid):
            client.acknowledge()
            await client.receive(
                lambda: client.conn.inbound_flow_control_window == 0 or client.done(sid)
            )
        body = client.answer(sid).body
    assert len(body) == size
    assert hashlib.sha256(body).hexdigest() == expected_sha256(size)


def pieces(count: int, size: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(count):
            yield bytes([i % 251]) * size

    return gen()


def pieces_sha256(count: int, size: int) -> str:
    digest = hashlib.sha256()
    for i in range(count):
        digest.update(bytes([i % 251]) * size)
    return digest.hexdigest()


async def test_large_uploads_arrive_intact(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    async with httpx.AsyncClient(http2=True, http1=False, base_url=p.url, timeout=30) as client:
        # no content-length: chunked on the HTTP/1.1 side
        streamed = await client.post("/echo", content=pieces(160, 128 * 1024))
        sized = await client.post("/echo", content=b"s" * (12 * MIB))
    assert streamed.json()["body_bytes"] == 160 * 128 * 1024
    assert streamed.json()["body_sha256"] == pieces_sha256(160, 128 * 1024)
    assert sized.json()["body_bytes"] == 12 * MIB
    assert sized.json()["body_sha256"] == hashlib.sha256(b"s" * (12 * MIB)).hexdigest()
    sent = [n.lower() for n, _ in streamed.json()["headers"]]
    assert "transfer-encoding" in sent and "content-length" not in sent


async def test_a_slow_backend_slows_the_upload_through_flow_control(proxy: StartProxy) -> None:
    read_started = asyncio.Event()
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        read_started.set()
        await release.wait()  # reads nothing more until released
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            await reader.readexactly(size + 2)
            total += size
            if size == 0:
                break
        body = b"%d" % total
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with scripted_backend(slow) as address:
        p = await proxy(config({"s": {"backends": [address]}}, pool="s"))
        async with raw_h2(p.port) as client:
            sid = client.start("/up", method="POST", end=False)
            upload = b"u" * (32 * MIB)
            sending = asyncio.create_task(client.send_body(sid, upload, end=True))
            await asyncio.wait_for(read_started.wait(), 5)
            await asyncio.sleep(1.0)
            # the backend reads nothing: evenflow stops granting window, the client waits
            assert not sending.done()
            assert client.conn.local_flow_control_window(sid) == 0
            release.set()
            await asyncio.wait_for(sending, 30)
            await client.receive(lambda: client.done(sid), timeout=30)
            assert client.answer(sid).body == b"%d" % len(upload)


async def test_request_and_response_trailers(proxy: StartProxy) -> None:
    seen: list[bytes] = []

    async def grpc_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        body = await reader.readuntil(b"0\r\n")
        tail = await reader.readuntil(b"\r\n\r\n")
        seen.append(body + tail)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            b"5\r\n\x00\x00\x00\x00\x00\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"
        )
        await writer.drain()

    async with scripted_backend(grpc_like) as address:
        p = await proxy(config({"g": {"backends": [address]}}, pool="g"))
        async with raw_h2(p.port) as client:
            sid = client.start(
                "/pkg.Svc/Call",
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                method="POST",
                end=False,
            )
            client.conn.send_data(sid, b"\x00\x00\x00\x00\x02hi")
            client.conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
            client.flush()
            await client.receive(lambda: client.done(sid))
            answer = client.answer(sid)
    head, body = seen
    assert b"transfer-encoding: chunked\r\n" in head
    assert body == b"7\r\n\x00\x00\x00\x00\x02hi\r\n0\r\nx-checksum: abc\r\n\r\n"
    assert answer.headers[b":status"] == b"200"
    assert answer.body == b"\x00" * 5
    assert answer.trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"fine")]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/unrouted.Svc/Call", b"12"), ("/down.Svc/Call", b"14")],
    ids=["no route: UNIMPLEMENTED", "connect refused: UNAVAILABLE"],
)
async def test_grpc_calls_evenflow_answers_get_a_grpc_status(
    proxy: StartProxy, path: str, status: bytes
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    p = await proxy(
        config(
            {"down": {"backends": [closed], "retries": {"attempts": 1}}},
            routes=[{"match": {"path_prefix": "/down."}, "pool": "down"}],
        )
    )
    async with raw_h2(p.port) as client:
        sid = client.start(
            path, ("content-type", "application/grpc"), ("te", "trailers"), method="POST", end=False
        )
        client.conn.send_data(sid, b"\x00\x00\x00\x00\x00", end_stream=True)
        client.flush()
        await client.receive(lambda: client.done(sid))
        answer = client.answer(sid)
        (response,) = [e for e in client.events if isinstance(e, ResponseReceived)]
    assert answer.headers[b":status"] == b"200"
    assert answer.headers[b"content-type"] == b"application/grpc"
    assert answer.headers[b"grpc-status"] == status
    assert answer.headers[b"grpc-message"]
    assert answer.body == b""
    assert response.stream_ended is not None  # trailers-only: one HEADERS that ends the stream


async def test_the_echo_sees_a_request_with_a_length_unchanged(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    async with raw_h2(p.port) as client:
        answer = await client.request("/echo", ("content-length", "5"), method="PUT", body=b"hello")
    echoed = json.loads(answer.body)
    assert echoed["method"] == "PUT" and echoed["body_bytes"] == 5
    assert ["content-length", "5"] in [[n.lower(), v] for n, v in echoed["headers"]]
