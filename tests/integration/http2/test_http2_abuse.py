"""Abuse over real sockets: a rapid-reset flood and a CONTINUATION flood cost the flooding
connection (GOAWAY ENHANCE_YOUR_CALM, then closed) while other clients keep being served; a
malformed request costs one stream; a header block left open is cut at the header timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from h2.errors import ErrorCodes
from h2_support import Proxy, config, raw_h2
from hyperframe.frame import ContinuationFrame, HeadersFrame

from evenflow.demo.backend import DemoBackend
from evenflow.observability.metrics import make_registry, render

pytestmark = pytest.mark.timeout(30)

StartBackends = Callable[..., Awaitable[list[DemoBackend]]]
StartProxy = Callable[[dict[str, Any]], Awaitable[Proxy]]


async def keep_asking(url: str, stop: asyncio.Event) -> list[int]:
    """Another client's requests, one after another, until `stop`: their statuses."""
    statuses = []
    async with httpx.AsyncClient(http2=True, http1=False, base_url=url, timeout=5) as client:
        while not stop.is_set():
            statuses.append((await client.get("/other")).status_code)
    return statuses


async def test_rapid_reset_flood_is_cut_off_while_others_are_served(
    backends: StartBackends, proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    stop = asyncio.Event()
    other = asyncio.create_task(keep_asking(p.url, stop))
    try:
        async with raw_h2(p.port) as flooder:
            await flooder.settled()
            with caplog.at_level(logging.WARNING, "evenflow.proxy.http2.downstream"):
                for _ in range(20):  # 20 batches of 50 HEADERS + RST_STREAM
                    if flooder.eof or flooder.goaway() is not None:
                        break
                    for _ in range(50):
                        sid = flooder.conn.get_next_available_stream_id()
                        flooder.conn.send_headers(sid, flooder.headers("/flood"))
                        flooder.conn.reset_stream(sid, ErrorCodes.CANCEL)
                    with contextlib.suppress(ConnectionError):
                        flooder.flush()
                        await flooder.writer.drain()
                    await flooder.receive(lambda: flooder.goaway() is not None, timeout=0.05)
                await flooder.receive(lambda: False, timeout=5)  # until evenflow closes
            goaway = flooder.goaway()
            assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            assert flooder.eof
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        statuses = await asyncio.wait_for(other, 10)
    assert statuses and set(statuses) == {200}  # the other client never noticed
    assert p.ctx.http2 is not None and p.ctx.http2.abuse == {"rapid_reset": 1}
    assert [r.getMessage() for r in caplog.records if "rapid reset" in r.getMessage()]
    assert a.in_flight == 0  # what the flood started is not left hanging on the backend
    metrics = render(make_registry(p.server)).decode()
    assert 'evenflow_http2_connections_closed_total{listener="web",reason="rapid_reset"} 1.0' in (
        metrics
    )
    assert 'evenflow_http2_connections_total{listener="web"} 2.0' in metrics


async def test_continuation_flood_is_cut_off(backends: StartBackends, proxy: StartProxy) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    async with raw_h2(p.port) as flooder:
        await flooder.settled()  # nothing else of the client's may come inside the block
        flooder.send_raw(HeadersFrame(1, data=b"\x82").serialize())  # END_HEADERS never comes
        for _ in range(100):
            if flooder.writer.is_closing():
                break
            with contextlib.suppress(ConnectionError):
                flooder.send_raw(ContinuationFrame(1, data=b"\x40\x01a\x01b").serialize())
                await flooder.writer.drain()
        await flooder.receive(lambda: False, timeout=5)
        goaway = flooder.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert flooder.eof
    assert p.ctx.http2 is not None and p.ctx.http2.abuse == {"continuation_flood": 1}
    async with httpx.AsyncClient(http2=True, http1=False, base_url=p.url, timeout=5) as client:
        assert (await client.get("/still-serving")).status_code == 200


async def test_a_malformed_request_costs_its_stream_only(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(config({"a": {"backends": [a.address]}}, pool="a"))
    async with raw_h2(p.port, validate=False) as client:
        bad = await client.request("/x", ("X-Upper", "1"))
        smuggle = await client.request("/x", ("x-a", "1\r\ntransfer-encoding: chunked"))
        good = await client.request("/x")
    assert bad.reset == ErrorCodes.PROTOCOL_ERROR
    assert smuggle.reset == ErrorCodes.PROTOCOL_ERROR
    assert good.headers[b":status"] == b"200"
    assert a.requests == 1  # nothing malformed reached the backend


async def test_a_header_block_left_open_is_cut_at_the_header_timeout(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    p = await proxy(
        config(
            {"a": {"backends": [a.address]}},
            pool="a",
            timeouts={"header": "1s", "idle": "10s", "body": "10s"},
        )
    )
    async with raw_h2(p.port) as client:
        await client.settled()
        client.send_raw(HeadersFrame(1, data=b"\x82").serialize())  # no END_HEADERS
        started = asyncio.get_running_loop().time()
        await client.receive(lambda: False, timeout=5)
        elapsed = asyncio.get_running_loop().time() - started
        assert client.eof
        assert 0.9 <= elapsed <= 3.0  # within a watchdog period past the timeout
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
