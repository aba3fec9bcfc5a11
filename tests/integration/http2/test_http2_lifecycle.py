"""Timeouts and endings over HTTP/2: a stalled request body is answered 408 on its stream, an
idle connection gets GOAWAY and is closed, and a shutdown lets streams in flight finish."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from h2.errors import ErrorCodes
from h2.events import DataReceived, StreamReset
from h2_support import Proxy, config, raw_h2

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(30)

StartBackends = Callable[..., Awaitable[list[DemoBackend]]]
StartProxy = Callable[[dict[str, Any]], Awaitable[Proxy]]
SHORT = {"header": "1s", "idle": "1s", "body": "1s"}


async def test_a_stalled_body_is_answered_408_on_its_stream(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a", timeouts=SHORT))
    async with raw_h2(p.port) as client:
        stalled = client.start("/echo", ("content-length", "10"), method="POST", end=False)
        client.conn.send_data(stalled, b"12345")
        client.flush()
        started = asyncio.get_running_loop().time()
        await client.receive(lambda: client.done(stalled), timeout=5)
        elapsed = asyncio.get_running_loop().time() - started
        assert client.answer(stalled).headers[b":status"] == b"408"
        assert 0.9 <= elapsed <= 3.0
        # the connection itself is fine
        assert (await client.request("/after")).headers[b":status"] == b"200"


async def test_a_stream_whose_client_gives_no_window_is_reset_at_the_send_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a", timeouts={"send": "1s"}))
    (backend,) = p.server.controller.backends["a"]
    async with raw_h2(p.port, window=65535) as client:
        # a download whose window the client never opens again: without a send timeout the
        # stream, and the backend connection behind it, would wait as long as the client likes
        sid = client.start("/file?size=8388608")
        await client.receive(lambda: client.conn.inbound_flow_control_window == 0, timeout=5)
        started = asyncio.get_running_loop().time()
        await client.receive(lambda: client.done(sid), timeout=5)
        elapsed = asyncio.get_running_loop().time() - started
        assert client.answer(sid).reset is not None and 0.5 <= elapsed <= 4.0
        assert backend.in_flight == 0
        client.acknowledge()  # the connection itself is fine
        assert (await client.request("/after")).headers[b":status"] == b"200"


async def test_a_finished_response_the_client_never_takes_is_reset_at_the_send_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a", timeouts={"send": "1s"}))
    async with raw_h2(p.port, window=65535) as client:
        # 100 kB: the backend is done and its exchange over, 35 kB wait for window that never
        # comes; the stream (and its buffer) must not live as long as the connection
        sid = client.start("/file?size=100000")
        await client.receive(lambda: client.conn.inbound_flow_control_window == 0, timeout=5)
        started = asyncio.get_running_loop().time()
        await client.receive(lambda: client.done(sid), timeout=5)
        elapsed = asyncio.get_running_loop().time() - started
        answer = client.answer(sid)
        assert answer.reset == ErrorCodes.CANCEL and len(answer.body) == 65535
        assert 0.5 <= elapsed <= 4.0
        (conn,) = p.ctx.connections
        assert not conn.streams  # type: ignore[attr-defined]


async def test_a_client_opening_its_window_in_small_steps_is_not_cut_off(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a", timeouts={"send": "1s"}))
    async with raw_h2(p.port, window=65535) as client:
        sid = client.start("/file?size=8388608")
        loop = asyncio.get_running_loop()
        acked = 0
        end = loop.time() + 4.0
        while loop.time() < end:
            # 4 KiB of window every 200 ms: about 20 kB/s, slow but never stopped
            await client.receive(lambda: False, timeout=0.2)
            received = sum(
                e.flow_controlled_length
                for e in client.events
                if isinstance(e, DataReceived) and e.stream_id == sid
            )
            step = min(4096, received - acked)
            if step:
                client.conn.acknowledge_received_data(step, sid)
                client.flush()
                acked += step
        assert not [e for e in client.events if isinstance(e, StreamReset)]
        assert acked > 65535  # it kept flowing


async def test_a_get_whose_end_never_comes_is_reset_at_the_header_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a", timeouts=SHORT))
    async with raw_h2(p.port) as client:
        sid = client.start("/x", end=False)
        await client.receive(lambda: client.done(sid), timeout=5)
        assert client.answer(sid).reset is not None
    assert a.requests == 0


async def test_an_idle_connection_gets_goaway_and_is_closed(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a", timeouts=SHORT))
    async with raw_h2(p.port) as client:
        assert (await client.request("/x")).headers[b":status"] == b"200"
        await client.receive(lambda: False, timeout=5)
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.NO_ERROR
        assert client.eof
    assert not p.ctx.connections


async def test_shutdown_lets_streams_in_flight_finish(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    async with raw_h2(p.port) as client:
        sid = client.start("/slow?delay=500")
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(p.server.stop())
        await client.receive(lambda: client.goaway() is not None)
        goaway = client.goaway()
        assert goaway is not None
        assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, sid)
        await client.receive(lambda: client.done(sid))
        assert client.answer(sid).headers[b":status"] == b"200"
        await client.receive(lambda: False, timeout=3)
        assert client.eof
        await asyncio.wait_for(stopping, 5)
