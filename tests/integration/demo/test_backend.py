"""The demo backend and the recording backend on real sockets: httpx, raw bytes, a subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator

import httptools
import httpx
import pytest

from evenflow.demo.backend import DemoBackend, start_backends
from evenflow.demo.recorder import RecordingBackend

# Independent of the module's BLOCK on purpose: the documented shape of size=N bodies.
FILL = b"".join(f"{i:015d}\n".encode() for i in range(4096))


def expected_body(size: int) -> bytes:
    return (FILL * (size // len(FILL) + 1))[:size]


@pytest.fixture
async def backend() -> AsyncIterator[DemoBackend]:
    async with DemoBackend("a") as b:
        yield b


@pytest.fixture
async def client(backend: DemoBackend) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://{backend.address}", trust_env=False, timeout=10
    ) as c:
        yield c


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()


class ResponseReader:
    """Parses responses off a raw connection with httptools (llhttp), not our own framing."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.done: list[Response] = []
        self.current = Response()
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.current.status = self.parser.get_status_code()
        self.done.append(self.current)
        self.current = Response()

    async def read(self, count: int) -> list[Response]:
        while len(self.done) < count:
            data = await self.reader.read(65536)
            assert data, f"connection closed after {len(self.done)} of {count} responses"
            self.parser.feed_data(data)
        answered, self.done = self.done[:count], self.done[count:]
        return answered


async def open_raw(
    server: DemoBackend | RecordingBackend,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def close_raw(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def test_names_itself_and_counts_what_it_answered(
    backend: DemoBackend, client: httpx.AsyncClient
) -> None:
    r = await client.get("/hello/world?x=1")
    assert r.status_code == 200
    assert r.headers["x-backend"] == "a"
    assert r.headers["content-type"] == "text/plain"
    assert r.text == "backend a: GET /hello/world?x=1\n"
    await client.post("/hello/world", content=b"ignored")
    assert backend.requests == 2
    assert backend.paths == {"/hello/world": 2}
    assert backend.in_flight == 0


async def test_status_option(client: httpx.AsyncClient) -> None:
    r = await client.get("/x?status=503")
    assert (r.status_code, r.headers["x-backend"]) == (503, "a")
    r = await client.get("/x?status=204")
    assert r.status_code == 204
    assert r.content == b""
    assert "content-length" not in r.headers
    for option in ("status=99", "size=-1", "delay=soon", "chunked=yes"):
        r = await client.get(f"/x?{option}")
        assert r.status_code == 400
        assert option.split("=")[0] in r.text


async def test_delay_answers_later_without_blocking_others(
    backend: DemoBackend, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    slow = asyncio.create_task(client.get("/slow?delay=400"))
    await asyncio.sleep(0.1)
    assert backend.in_flight == 1
    fast = await client.get("/fast")
    assert fast.status_code == 200
    assert time.monotonic() - started < 0.35, "a delayed request held up another connection"
    assert not slow.done()
    r = await slow
    assert r.status_code == 200
    assert 0.4 <= time.monotonic() - started < 5
    assert backend.in_flight == 0
    assert backend.paths == {"/slow": 1, "/fast": 1}


async def test_size_5_mib(client: httpx.AsyncClient) -> None:
    size = 5 * 1024 * 1024 + 17
    r = await client.get(f"/big?size={size}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(size)
    assert len(r.content) == size
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(expected_body(size)).hexdigest()


async def test_size_chunked(client: httpx.AsyncClient) -> None:
    size = 300_000
    r = await client.get(f"/big?size={size}&chunked=1")
    assert r.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in r.headers
    assert r.content == expected_body(size)


async def test_huge_body_waits_for_a_slow_reader(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        writer.write(b"GET /huge?size=1073741824 HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.3)
        (transport,) = backend.connections_open
        # Not reading: the server must have paused at the transport's high-water mark instead
        # of queueing the gigabyte.
        assert transport.get_write_buffer_size() < 4 * 1024 * 1024  # type: ignore[attr-defined]
        got = 0
        while got < 8 * 1024 * 1024:
            got += len(await reader.read(1 << 20))
        assert backend.in_flight == 1
    finally:
        await close_raw(writer)


async def test_small_chunked_body_is_framed_exactly(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        writer.write(b"GET /c?chunked=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        expected = (
            b"HTTP/1.1 200 OK\r\nx-backend: a\r\ncontent-type: text/plain\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            b"1c\r\nbackend a: GET /c?chunked=1\n\r\n0\r\n\r\n"
        )
        assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
    finally:
        await close_raw(writer)


async def test_head_has_length_but_no_body(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        writer.write(b"HEAD /h?size=100000 HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 100000\r\n" in head
        # Nothing follows the head: the next bytes are the next response.
        writer.write(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        (r,) = await asyncio.wait_for(ResponseReader(reader).read(1), 5)
        assert r.body == b"backend a: GET /next\n"
    finally:
        await close_raw(writer)


async def test_echo_content_length_upload(client: httpx.AsyncClient) -> None:
    body = bytes(range(256)) * 4000
    r = await client.post("/echo?q=1", content=body, headers={"X-Test": "yes"})
    assert r.headers["content-type"] == "application/json"
    echo = r.json()
    assert echo["backend"] == "a"
    assert echo["method"] == "POST"
    assert echo["path"] == "/echo?q=1"
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert [k.lower() for k, _ in echo["headers"]].count("content-length") == 1
    assert ["X-Test", "yes"] in echo["headers"]


async def test_echo_chunked_upload(client: httpx.AsyncClient) -> None:
    pieces = [b"x" * 1000, b"y" * 70_000, b"z"]

    async def upload() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    r = await client.put("/echo", content=upload())
    echo = r.json()
    assert ["Transfer-Encoding", "chunked"] in [[k.title(), v] for k, v in echo["headers"]]
    assert echo["method"] == "PUT"
    assert echo["body_bytes"] == 71_001
    assert echo["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


async def test_echo_keeps_header_order_and_case(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nX-MiXeD: 1\r\nx-mixed: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        (r,) = await asyncio.wait_for(ResponseReader(reader).read(1), 5)
        echo = json.loads(r.body)
        assert echo["headers"] == [
            ["Host", "t"],
            ["X-MiXeD", "1"],
            ["x-mixed", "2"],
            ["Transfer-Encoding", "chunked"],
        ]
        assert echo["body_sha256"] == hashlib.sha256(b"abc").hexdigest()
    finally:
        await close_raw(writer)


async def test_pipelined_requests_are_answered_in_order(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        # The first one is slower, yet its answer must come first.
        writer.write(
            b"GET /first?delay=150 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first, second, third = await asyncio.wait_for(ResponseReader(reader).read(3), 5)
        assert first.body == b"backend a: GET /first?delay=150\n"
        assert json.loads(second.body)["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
        assert third.body == b"backend a: GET /third\n"
        assert backend.requests == 3
    finally:
        await close_raw(writer)


async def test_long_pipeline_behind_a_slow_request_stays_in_order(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        # Sent in several reads while the first request waits: past 64 queued requests the
        # backend must stop reading, leaving the rest in the kernel, and resume later.
        targets = [f"/p{i}?delay=300" if i == 0 else f"/p{i}" for i in range(300)]
        for start in range(0, len(targets), 30):
            batch = targets[start : start + 30]
            writer.write(
                b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % t.encode() for t in batch)
            )
            await writer.drain()
            await asyncio.sleep(0.01)
        assert backend.in_flight < 150
        responses = await asyncio.wait_for(ResponseReader(reader).read(len(targets)), 10)
        assert [r.body.decode() for r in responses] == [f"backend a: GET {t}\n" for t in targets]
        assert backend.in_flight == 0
    finally:
        await close_raw(writer)


async def test_expect_continue_gets_a_100_before_the_body(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    try:
        writer.write(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        (r,) = await asyncio.wait_for(ResponseReader(reader).read(1), 5)
        assert json.loads(r.body)["body_bytes"] == 2
    finally:
        await close_raw(writer)


async def test_connection_close_and_bad_requests_end_the_connection(backend: DemoBackend) -> None:
    for request, status in [
        (b"GET /bye HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n", 200),
        (b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ]:
        reader, writer = await open_raw(backend)
        try:
            writer.write(request)
            data = await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closed
            assert data.startswith(b"HTTP/1.1 %d " % status)
            assert b"\r\nconnection: close\r\n" in data
            assert data.count(b"HTTP/1.1") == 1
        finally:
            await close_raw(writer)
    assert "/never" not in backend.paths
    assert backend.in_flight == 0


async def test_health_attribute_and_control_path(
    backend: DemoBackend, client: httpx.AsyncClient
) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok")
    backend.healthy = False
    assert (await client.get("/healthz")).status_code == 503
    r = await client.post("/_control/health?ok=1")
    assert r.status_code == 200
    assert backend.healthy is True
    assert (await client.get("/healthz")).status_code == 200
    await client.post("/_control/health?ok=0")
    assert (await client.get("/healthz")).status_code == 503
    assert (await client.get("/_control/health?ok=1")).status_code == 405
    assert backend.healthy is False


async def test_start_backends_each_on_its_own_port() -> None:
    backends = await start_backends(["a", "b", "c"])
    try:
        assert len({b.port for b in backends}) == 3
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            for b in backends:
                r = await client.get(f"http://{b.address}/")
                assert r.headers["x-backend"] == b.name
                assert b.requests == 1
    finally:
        for b in backends:
            await b.close()


async def test_close_ends_open_connections(backend: DemoBackend) -> None:
    reader, writer = await open_raw(backend)
    writer.write(b"GET /held?delay=10000 HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.sleep(0.05)
    await backend.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert backend.in_flight == 0
    await close_raw(writer)


async def test_cli_prints_one_line_per_backend_and_exits_0_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "evenflow.demo.backend",
        "--name",
        "a",
        "--port",
        "0",
        "--name",
        "b",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [await asyncio.wait_for(proc.stdout.readline(), 10) for _ in range(2)]
        addresses = {}
        for line in lines:
            word, name, address = line.decode().split()
            assert word == "listening"
            addresses[name] = address
        assert set(addresses) == {"a", "b"}
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            for name, address in addresses.items():
                r = await client.get(f"http://{address}/")
                assert r.text == f"backend {name}: GET /\n"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await proc.stdout.read() == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_recorder_keeps_raw_bytes_per_connection() -> None:
    async with RecordingBackend("rec") as rec:
        sent = [
            b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nbody\r\n0\r\n\r\n",
            b"HEAD /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nsmuggled",
        ]
        for data in sent:
            reader, writer = await open_raw(rec)
            try:
                writer.write(data)
                await writer.drain()
                if data.startswith(b"HEAD"):
                    answer = await asyncio.wait_for(reader.read(), 5)
                    assert answer.endswith(b"connection: close\r\n\r\n")
                else:
                    one, two = await asyncio.wait_for(ResponseReader(reader).read(2), 5)
                    assert (one.status, two.status) == (200, 200)
                    assert one.body == two.body == b"recorded\n"
                    assert two.headers["x-backend"] == "rec"
            finally:
                await close_raw(writer)
        assert rec.connections == sent
        assert rec.requests == 3
        assert rec.received() == b"".join(sent)


async def test_recorder_answers_400_to_what_it_cannot_parse() -> None:
    async with RecordingBackend() as rec:
        reader, writer = await open_raw(rec)
        try:
            bad = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            writer.write(bad)
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.startswith(b"HTTP/1.1 400 ")
        finally:
            await close_raw(writer)
        assert rec.connections == [bad]
        assert (rec.requests, rec.errors) == (0, 1)
