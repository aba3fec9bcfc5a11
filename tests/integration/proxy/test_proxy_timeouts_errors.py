"""Timeouts and errors: what a client sees when it, or a backend, misbehaves."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import httpx
import pytest
from proxy_support import (
    Proxy,
    RawClient,
    Response,
    StartBackends,
    StartProxy,
    StartRawServer,
    Timer,
    build_request,
    closed_port,
    config,
    raw_client,
    read_request,
    sha256,
    unanswered_listener,
)

pytestmark = pytest.mark.timeout(30)


def assert_canned(resp: Response, status: int) -> None:
    assert resp.status == status, resp.head
    assert "x-backend" not in resp.headers, "the answer came from a backend"
    assert 0 < len(resp.body) < 200, resp.body


# --- client-side timeouts ---------------------------------------------------------------------


async def test_slowloris_head_gets_408_within_the_header_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config({"p": {"backends": [a.address]}}, pool="p", timeouts={"header": "500ms"})
    )
    async with raw_client(p) as client:
        timer = Timer()
        await client.send(b"GET /slow HTTP/1.1\r\nHost: test.local\r\n")

        async def trickle() -> None:
            # a header line every 100ms: always sending, never finishing the head
            with contextlib.suppress(ConnectionError):
                for i in range(40):
                    await asyncio.sleep(0.1)
                    await client.send(b"X-Slow-%d: 1\r\n" % i)

        task = asyncio.create_task(trickle())
        try:
            resp = await client.response(timeout=4)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elapsed = timer.elapsed
        assert_canned(resp, 408)
        assert 0.45 <= elapsed <= 1.5, f"408 after {elapsed:.2f}s with a 500ms header timeout"
        assert await client.is_closed_by_peer(3)
    assert a.requests == 0


async def test_connection_that_sends_nothing_is_closed(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config({"p": {"backends": [a.address]}}, pool="p", timeouts={"header": "500ms"})
    )
    async with raw_client(p) as client:
        timer = Timer()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await client.reader.read()  # a 408 or nothing, then EOF
        assert 0.45 <= timer.elapsed <= 1.5, f"closed after {timer.elapsed:.2f}s"


async def test_idle_keep_alive_connection_is_closed(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", timeouts={"idle": "400ms"}))
    async with raw_client(p) as client:
        # requests 200ms apart keep it open past the idle timeout
        for i in range(5):
            assert (await client.get(f"/busy/{i}")).status == 200
            await asyncio.sleep(0.2)
        timer = Timer()
        assert (await client.get("/last")).status == 200
        assert await client.is_closed_by_peer(3), "idle connection not closed within 3s"
        assert 0.35 <= timer.elapsed <= 1.5, f"closed after {timer.elapsed:.2f}s, idle is 400ms"


async def _never_reading(p: Proxy, request: bytes) -> socket.socket:
    """A client connection that sends `request` and reads nothing (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (p.host, p.port))
    await asyncio.get_running_loop().sock_sendall(sock, request)
    return sock


async def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", timeouts={"send": "500ms"}))
    [backend] = p.server.controller.backends["p"]
    # a 100 MB download the client never reads: evenflow's buffer to it fills, the backend is
    # paused; without a send timeout both would be held for as long as the client likes
    sock = await _never_reading(p, b"GET /big?size=100000000 HTTP/1.1\r\nHost: t\r\n\r\n")
    try:
        await asyncio.sleep(0.3)
        assert backend.in_flight == 1
        timer = Timer()
        while backend.in_flight:
            assert timer.elapsed < 5, "the backend is still held by a client that reads nothing"
            await asyncio.sleep(0.05)
        assert timer.elapsed >= 0.15, f"cut after {timer.elapsed:.2f}s, the timeout is 500ms"
    finally:
        sock.close()
    await asyncio.sleep(0.4)  # the access log is flushed a few times a second
    [line] = p.log_lines()
    assert line["status"] == 200 and line["bytes_out"] < 100_000_000
    assert any("did not read the response" in failure for failure in line["failures"]), line


@pytest.mark.parametrize(
    "after",
    [b"\x00BAD\r\n\r\n", b"GET /next HTTP/1.1\r\nHost: t\r\n"],
    ids=["a-malformed-request", "half-a-request"],
)
async def test_a_pipelined_request_does_not_shield_a_client_from_the_send_timeout(
    backends: StartBackends, proxy: StartProxy, after: bytes
) -> None:
    (a,) = await backends("a")
    timeouts = {"send": "500ms", "header": "500ms"}
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", timeouts=timeouts))
    [backend] = p.server.controller.backends["p"]
    sock = await _never_reading(p, b"GET /big?size=100000000 HTTP/1.1\r\nHost: t\r\n\r\n" + after)
    try:
        timer = Timer()
        while not backend.in_flight:  # the download has begun
            assert timer.elapsed < 2, "the request never reached the backend"
            await asyncio.sleep(0.02)
        while backend.in_flight:
            assert timer.elapsed < 5, "the backend is still held by a client that reads nothing"
            await asyncio.sleep(0.05)
    finally:
        sock.close()


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "keep-alive"])
async def test_a_finished_response_never_read_does_not_hold_the_connection(
    backends: StartBackends, proxy: StartProxy, close: bool
) -> None:
    (a,) = await backends("a")
    timeouts = {"send": "500ms", "idle": "500ms"}
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", timeouts=timeouts))
    ctx = p.server.listening["web"].ctx
    extra = b"Connection: close\r\n" if close else b""
    # under what the kernel buffers on loopback: the backend finishes, the exchange ends,
    # and what is left waits in evenflow's buffer for a client that never reads it
    sock = await _never_reading(p, b"GET /big?size=2900000 HTTP/1.1\r\nHost: t\r\n%s\r\n" % extra)
    try:
        timer = Timer()
        await asyncio.sleep(0.3)
        while ctx.connections:
            assert timer.elapsed < 5, "the connection outlives its client by far"
            await asyncio.sleep(0.05)
    finally:
        sock.close()


async def test_a_response_cut_for_not_reading_ends_with_a_reset_not_a_clean_end(
    backends: StartBackends, proxy: StartProxy
) -> None:
    # HTTP/1.0 and a chunked backend: the body is delimited by the close, so a FIN after
    # the queued bytes would make a cut response look complete
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", timeouts={"send": "500ms"}))
    loop = asyncio.get_running_loop()
    sock = await _never_reading(p, b"GET /big?size=20000000&chunked=1 HTTP/1.0\r\nHost: t\r\n\r\n")
    try:
        await asyncio.sleep(2.0)  # past the send timeout
        with pytest.raises(ConnectionResetError):
            while await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5):
                pass
    finally:
        sock.close()


# --- backend failures -------------------------------------------------------------------------


async def test_connect_failure_is_retried_on_another_backend(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    dead = f"127.0.0.1:{closed_port()}"
    p = await proxy(config({"p": {"backends": [dead, a.address]}}, pool="p"))
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        for i in range(10):
            r = await c.get(f"/r/{i}")
            assert (r.status_code, r.headers.get("x-backend")) == (200, "a"), r.text
        # nothing was sent to the dead backend, so a POST with a body is retried too
        body = bytes(range(256)) * 400  # 100 KiB
        for _ in range(2):
            r = await c.post("/echo", content=body)
            assert r.status_code == 200, r.text
            assert r.json()["body_sha256"] == sha256(body)
    assert a.requests == 12


async def test_single_backend_on_a_closed_port_gives_502(proxy: StartProxy) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    p = await proxy(config({"p": {"backends": [dead]}}, pool="p"))
    async with raw_client(p) as client:
        timer = Timer()
        resp = await client.get("/x")
        assert_canned(resp, 502)
        assert timer.elapsed < 2


async def test_connect_timeout_gives_504(proxy: StartProxy) -> None:
    with unanswered_listener() as lost:
        pool = {"backends": [lost], "timeouts": {"connect": "300ms"}, "retries": {"attempts": 1}}
        p = await proxy(config({"p": pool}, pool="p"))
        async with raw_client(p) as client:
            timer = Timer()
            resp = await client.get("/x")
            assert_canned(resp, 504)
            assert 0.3 <= timer.elapsed <= 1.0, f"answered after {timer.elapsed:.2f}s"


async def test_connect_timeout_is_retried_on_another_backend(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    with unanswered_listener() as lost:
        pool = {"backends": [lost, a.address], "timeouts": {"connect": "300ms"}}
        p = await proxy(config({"p": pool}, pool="p"))
        async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
            for i in range(4):
                timer = Timer()
                r = await c.post("/echo", content=b"order %d" % i)
                assert (r.status_code, r.json()["backend"]) == (200, "a")
                assert timer.elapsed <= 1.0
        assert a.requests == 4


async def test_slow_backend_gives_504_after_the_response_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    pool = {"backends": [a.address], "timeouts": {"response": "300ms"}, "retries": {"attempts": 1}}
    p = await proxy(config({"p": pool}, pool="p"))
    async with raw_client(p) as client:
        timer = Timer()
        resp = await client.get("/slow?delay=5000")
        elapsed = timer.elapsed
        assert_canned(resp, 504)
        # documented slack: a timeout acts within twice its value
        assert 0.3 <= elapsed <= 1.0, f"504 after {elapsed:.2f}s with a 300ms response timeout"


async def test_backend_that_stalls_mid_body_cuts_the_response(
    raw_server: StartRawServer, proxy: StartProxy
) -> None:
    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(30)

    srv = await raw_server(backend)
    p = await proxy(
        config({"p": {"backends": [srv.address], "timeouts": {"response": "300ms"}}}, pool="p")
    )
    async with raw_client(p) as client:
        await client.send(build_request("GET", "/stall"))
        head = await client.read_head()
        assert head.startswith(b"HTTP/1.1 200")
        timer = Timer()
        got = b""
        with contextlib.suppress(ConnectionError):
            got = await asyncio.wait_for(client.reader.read(), 5)
        # the client must learn the response is broken: the connection ends short of 100 bytes
        assert got == b"x" * 10
        assert timer.elapsed <= 1.5, f"stalled response cut after {timer.elapsed:.2f}s"


# --- canned answers to bad requests -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: test.local\r\nBad Header Line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Bad\x01Name: 1\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: test.local\r\n\r\n",
        b"GET / HTTP/1.x\r\nHost: test.local\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # RFC 9112 §3.2: no Host
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: test.local\r\nContent-Length: abc\r\n\r\n",
    ],
    ids=["no-colon", "ctl-in-name", "bad-method", "bad-version", "no-host", "two-hosts", "bad-cl"],
)
async def test_malformed_request_gets_400_and_close(
    backends: StartBackends, proxy: StartProxy, raw: bytes
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    async with raw_client(p) as client:
        await client.send(raw)
        resp = await client.response()
        assert_canned(resp, 400)
        assert await client.is_closed_by_peer(3)
    assert a.requests == 0


async def test_body_over_max_body_bytes_gets_413(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config({"p": {"backends": [a.address]}}, pool="p", limits={"max_body_bytes": "1KiB"})
    )
    async with raw_client(p) as client:
        await client.send(build_request("POST", "/echo", {"Content-Length": "5000"}))
        resp = await client.response()
        assert_canned(resp, 413)
    async with raw_client(p) as client:
        # at the limit is fine
        resp = await client.request("POST", "/echo", body=b"y" * 1024)
        assert resp.status == 200 and resp.json()["body_bytes"] == 1024
    assert a.requests == 1


async def test_chunked_body_over_max_body_bytes_gets_413(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config({"p": {"backends": [a.address]}}, pool="p", limits={"max_body_bytes": "1KiB"})
    )
    async with raw_client(p) as client:
        await client.send(
            build_request("POST", "/echo", {"Transfer-Encoding": "chunked"})
            + (b"258\r\n" + b"z" * 600 + b"\r\n") * 3
            + b"0\r\n\r\n"
        )
        resp = await client.response()
        assert_canned(resp, 413)


async def test_head_over_max_header_bytes_gets_431(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    limits = {"max_header_bytes": "1KiB"}
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", limits=limits))
    async with raw_client(p) as client:
        resp = await client.get("/ok", {"X-Small": "s" * 500})
        assert resp.status == 200  # under the limit
    async with raw_client(p) as client:
        await client.send(build_request("GET", "/big", {"X-Big": "b" * 4000}))
        resp = await client.response()
        assert_canned(resp, 431)
        assert await client.is_closed_by_peer(3)
    assert a.requests == 1


def send_slowly_then_read(port: int, raw: bytes, piece: int) -> tuple[list[OSError], bytes]:
    """A blocking client: send `raw` in pieces 10ms apart, then read until EOF."""
    errors: list[OSError] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            for i in range(0, len(raw), piece):
                s.sendall(raw[i : i + piece])
                time.sleep(0.01)
        except OSError as exc:
            errors.append(exc)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except OSError as exc:
            errors.append(exc)
    return errors, received


async def test_431_while_the_client_still_sends_is_answered_without_a_reset(
    backends: StartBackends, proxy: StartProxy
) -> None:
    # Closing with unread input makes the kernel send RST, which can destroy the answer before
    # the client reads it; evenflow's _close means to drain briefly instead (no RST).
    (a,) = await backends("a")
    limits = {"max_header_bytes": "1KiB"}
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", limits=limits))
    raw = build_request("GET", "/big", {"X-Big": "b" * 4000})
    errors, received = await asyncio.to_thread(send_slowly_then_read, p.port, raw, 300)
    assert received.startswith(b"HTTP/1.1 431 "), received
    assert errors == [], f"the connection was reset while the client was sending: {errors}"


async def test_413_while_the_client_still_sends_its_body(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    limits = {"max_body_bytes": "1KiB"}
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", limits=limits))
    raw = build_request("POST", "/echo", body=b"q" * 200_000)
    errors, received = await asyncio.to_thread(send_slowly_then_read, p.port, raw, 20_000)
    assert received.startswith(b"HTTP/1.1 413 "), received
    assert errors == [], f"the connection was reset while the client was sending: {errors}"


async def test_413_to_httpx_sending_a_large_body_in_one_go(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    limits = {"max_body_bytes": "1KiB"}
    p = await proxy(config({"p": {"backends": [a.address]}}, pool="p", limits=limits))
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        r = await c.post("/echo", content=b"x" * (5 << 20))
        assert r.status_code == 413
    assert a.requests == 0


async def test_503_when_no_backend_is_healthy(backends: StartBackends, proxy: StartProxy) -> None:
    # The honest way to an empty pool: its only backend fails its probes, and panic mode (which
    # would balance over unhealthy backends rather than answer nothing) is turned off.
    (a,) = await backends("a")
    a.healthy = False  # /healthz answers 503
    health = {
        "active": {
            "http": {"path": "/healthz"},
            "interval": "200ms",
            "fast_interval": "100ms",
            "timeout": "100ms",
            "rise": 1,
            "fall": 1,
        },
        "panic_threshold": "0%",
        "initial_state": "unhealthy",
    }
    p = await proxy(config({"p": {"backends": [a.address], "health": health}}, pool="p"))
    async with raw_client(p) as client:
        assert_canned(await client.get("/x"), 503)
    # the backend recovers: traffic resumes (keep-alive after a canned answer is judged by
    # the 404 test; here every try gets its own connection)
    a.healthy = True
    timer = Timer()
    while True:
        async with raw_client(p) as client:
            resp = await client.get("/x")
        if resp.status == 200 or timer.elapsed > 3:
            break
        assert_canned(resp, 503)
        await asyncio.sleep(0.05)
    assert (resp.status, resp.headers.get("x-backend")) == (200, "a"), resp.head
    assert a.paths.get("/x") == 1


async def test_connection_past_max_connections_is_served_once_one_closes(
    backends: StartBackends, proxy: StartProxy
) -> None:
    # ListenerLimits.max_connections: "past it, new connections wait in the kernel's backlog
    # until one closes"
    (a,) = await backends("a")
    p = await proxy(
        config({"p": {"backends": [a.address]}}, pool="p", limits={"max_connections": 1})
    )
    first = await RawClient.open(p)
    try:
        assert (await first.get("/first")).status == 200
        second = await RawClient.open(p)
        try:
            await second.send(build_request("GET", "/second"))
            await asyncio.sleep(0.3)
            await first.close()
            resp = await second.response(timeout=5)
            assert resp.status == 200, resp.head
            assert resp.body == b"backend a: GET /second\n"
        finally:
            await second.close()
    finally:
        await first.close()
