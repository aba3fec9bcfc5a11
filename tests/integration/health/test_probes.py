"""probe_tcp and probe_http against real servers on 127.0.0.1: each outcome and its wording.

The demo backend answers /healthz 200 or 503 (its `healthy` flag), `?status=CODE` and `/echo`;
small raw servers stand in for what a demo backend will not do (never answer, answer garbage,
keep a HEAD response's connection open). Every probe runs with a short timeout, and each test
checks it returned within that bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from evenflow.config.health import HttpProbe
from evenflow.config.load import load_data
from evenflow.core.backend import Health
from evenflow.demo.backend import DemoBackend
from evenflow.health.probes import describe, probe_http, probe_tcp
from evenflow.runtime.controller import Controller

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
TIMEOUT_S = 0.3
# a probe that fails by timing out takes its timeout plus scheduling noise; one that gets an
# answer on 127.0.0.1 takes milliseconds
SLACK_S = 0.25


def spec(**fields: Any) -> HttpProbe:
    return HttpProbe.model_validate(fields)


async def timed(probe: Awaitable[tuple[bool, str]]) -> tuple[bool, str, float]:
    started = time.monotonic()
    ok, detail = await probe
    return ok, detail, time.monotonic() - started


async def http(port: int, timeout_s: float = TIMEOUT_S, **fields: Any) -> tuple[bool, str]:
    ok, detail, elapsed = await timed(
        probe_http(HOST, port, spec(**fields), timeout_s, f"{HOST}:{port}")
    )
    assert elapsed < timeout_s + SLACK_S, f"probe took {elapsed:.3f}s"
    return ok, detail


@pytest.fixture
async def backend() -> AsyncIterator[DemoBackend]:
    async with DemoBackend("a") as b:
        yield b


@pytest.fixture
def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A listening port whose accept queue is full: a new connect hangs (SYNs are dropped)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind((HOST, 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(4):  # fill the queue; the connects past it time out, that is the point
            filler = stack.enter_context(socket.socket())
            filler.settimeout(0.2)
            with contextlib.suppress(OSError):
                filler.connect((HOST, port))
        yield port


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    """A one-off TCP server on 127.0.0.1 running `handler` per connection; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)

    server = await asyncio.start_server(wrapped, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    await asyncio.Event().wait()  # accepted, read the request, and says nothing


# --- tcp ----------------------------------------------------------------------------------------


async def test_tcp_passes_when_the_backend_accepts(backend: DemoBackend) -> None:
    ok, detail, elapsed = await timed(probe_tcp(HOST, backend.port, TIMEOUT_S))
    assert (ok, detail) == (True, "connected")
    assert elapsed < SLACK_S


async def test_tcp_fails_on_a_closed_port(closed_port: int) -> None:
    ok, detail, elapsed = await timed(probe_tcp(HOST, closed_port, TIMEOUT_S))
    assert (ok, detail) == (False, "connect failed: connection refused")
    assert elapsed < SLACK_S


async def test_tcp_fails_on_connect_timeout(unaccepting_port: int) -> None:
    ok, detail, elapsed = await timed(probe_tcp(HOST, unaccepting_port, TIMEOUT_S))
    assert (ok, detail) == (False, "connect timeout after 0.3s")
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S


async def test_tcp_passes_on_a_server_that_never_answers() -> None:
    async with raw_server(never_answer) as port:
        assert await probe_tcp(HOST, port, TIMEOUT_S) == (True, "connected")


# --- http: status -------------------------------------------------------------------------------


async def test_http_passes_on_200(backend: DemoBackend) -> None:
    assert await http(backend.port, path="/healthz") == (True, "status 200")
    assert backend.paths["/healthz"] == 1


async def test_http_fails_on_a_status_not_expected(backend: DemoBackend) -> None:
    backend.healthy = False
    assert await http(backend.port, path="/healthz") == (False, "status 503")


async def test_http_follows_the_backend_flipping_back(backend: DemoBackend) -> None:
    backend.healthy = False
    assert (await http(backend.port, path="/healthz"))[0] is False
    backend.healthy = True
    assert (await http(backend.port, path="/healthz"))[0] is True


@pytest.mark.parametrize(
    ("status", "expect", "ok"),
    [
        (200, None, True),  # default 200-399
        (302, None, True),
        (399, None, True),
        (404, None, False),
        (500, None, False),
        (404, [404], True),
        (404, ["400-499"], True),
        (204, [200], False),
        (503, [200, "500-599"], True),
        (418, [200, "500-599"], False),
        (301, ["200-299", 301], True),
    ],
)
async def test_http_expect_status_lists_and_ranges(
    backend: DemoBackend, status: int, expect: list[Any] | None, ok: bool
) -> None:
    fields: dict[str, Any] = {"path": f"/x?status={status}"}
    if expect is not None:
        fields["expect_status"] = expect
    assert await http(backend.port, **fields) == (ok, f"status {status}")


# --- http: body, method, host -------------------------------------------------------------------


async def test_http_body_contains_passes_when_the_body_has_the_text(backend: DemoBackend) -> None:
    assert await http(backend.port, path="/healthz", body_contains="ok") == (True, "status 200")


async def test_http_body_contains_fails_when_it_is_missing(backend: DemoBackend) -> None:
    assert await http(backend.port, path="/healthz", body_contains="ready") == (
        False,
        "status 200 but body lacks 'ready'",
    )


async def test_http_body_contains_only_looks_at_the_first_64_kib(backend: DemoBackend) -> None:
    # the generated body is lines "%015d\n": line 4000 starts at byte 64000, line 5000 at 80000
    size = 100_000
    found = await http(backend.port, path=f"/big?size={size}", body_contains="000000000004000")
    assert found == (True, "status 200")
    past = await http(backend.port, path=f"/big?size={size}", body_contains="000000000005000")
    assert past == (False, "status 200 but body lacks '000000000005000'")


async def test_http_head_passes_without_reading_a_body(backend: DemoBackend) -> None:
    assert await http(backend.port, method="HEAD", path="/healthz") == (True, "status 200")
    assert backend.paths["/healthz"] == 1


async def test_http_head_does_not_wait_for_the_body_its_length_announces() -> None:
    async def head_then_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        await asyncio.Event().wait()  # keeps the connection open, as a HEAD response may

    async with raw_server(head_then_hold) as port:
        ok, detail, elapsed = await timed(
            probe_http(HOST, port, spec(method="HEAD"), 2.0, f"{HOST}:{port}")
        )
    assert (ok, detail) == (True, "status 200")
    assert elapsed < SLACK_S


async def test_http_get_ends_at_the_end_of_the_response_not_the_connection() -> None:
    async def answer_then_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await asyncio.Event().wait()  # ignores the probe's Connection: close

    async with raw_server(answer_then_hold) as port:
        ok, detail, elapsed = await timed(
            probe_http(HOST, port, spec(body_contains="ok"), 2.0, f"{HOST}:{port}")
        )
    assert (ok, detail) == (True, "status 200")
    assert elapsed < SLACK_S


async def test_http_sends_method_path_and_host(backend: DemoBackend) -> None:
    # /echo answers the request as received, so body_contains sees what the probe sent
    assert await http(backend.port, method="OPTIONS", path="/echo", body_contains='"OPTIONS"') == (
        True,
        "status 200",
    )
    default_host = f'["Host", "{HOST}:{backend.port}"]'
    assert await http(backend.port, path="/echo", body_contains=default_host) == (
        True,
        "status 200",
    )
    named = '["Host", "health.example"]'
    assert await http(
        backend.port, path="/echo?probe=1", host="health.example", body_contains=named
    ) == (True, "status 200")
    assert await http(backend.port, path="/echo?probe=1", body_contains='"/echo?probe=1"') == (
        True,
        "status 200",
    )


# --- http: failures -----------------------------------------------------------------------------


async def test_http_times_out_on_a_server_that_accepts_and_never_answers() -> None:
    async with raw_server(never_answer) as port:
        ok, detail, elapsed = await timed(
            probe_http(HOST, port, spec(path="/healthz"), TIMEOUT_S, f"{HOST}:{port}")
        )
    assert (ok, detail) == (False, "timeout after 0.3s")
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S


async def test_http_times_out_on_connect(unaccepting_port: int) -> None:
    assert await http(unaccepting_port, path="/healthz") == (False, "timeout after 0.3s")


async def test_http_connection_refused(closed_port: int) -> None:
    assert await http(closed_port, path="/healthz") == (
        False,
        "connect failed: connection refused",
    )


async def test_http_a_server_that_closes_without_answering() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with raw_server(hang_up) as port:
        assert await http(port, path="/healthz") == (False, "no response")


async def test_http_a_server_that_answers_garbage() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    async with raw_server(garbage) as port:
        ok, detail = await http(port, path="/healthz")
    assert ok is False
    assert detail.startswith("invalid response")


# --- a separate probe port ----------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], within_s: float) -> float:
    """Poll `condition` until true; the seconds it took. Fails the test past `within_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not true within {within_s}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_separate_probe_port_is_probed_instead_of_the_traffic_port(
    backend: DemoBackend,
) -> None:
    # traffic goes to `backend`; its health is served on another port (a second server whose
    # /healthz we control). The pool's verdict must follow the probe port, and the traffic
    # port must see no probe at all.
    async with DemoBackend("health-side", healthy=False) as health_side:
        config = load_data(
            {
                "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "web"}],
                "pools": {
                    "web": {
                        "backends": [backend.address],
                        "health": {
                            "active": {
                                "http": {"path": "/healthz"},
                                "port": health_side.port,
                                "interval": "200ms",
                                "fast_interval": "50ms",
                                "timeout": "200ms",
                                "rise": 1,
                                "fall": 1,
                            },
                            "panic_threshold": "0%",
                        },
                    }
                },
            }
        ).config
        controller = Controller(config)
        state = controller.backends["web"][0]
        await controller.start()
        try:
            await wait_for(lambda: state.health is Health.UNHEALTHY, 1.0)
            assert state.last_probe == "status 503"
            health_side.healthy = True
            await wait_for(lambda: state.health is Health.HEALTHY, 1.0)
        finally:
            await asyncio.wait_for(controller.stop(), 5.0)
        assert health_side.paths["/healthz"] >= 2
        assert backend.paths["/healthz"] == 0


def test_describe_names_the_probe() -> None:
    assert describe("http", spec(method="HEAD", path="/healthz")) == "HEAD /healthz"
    assert describe("tcp", None) == "tcp connect"
