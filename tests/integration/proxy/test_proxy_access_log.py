"""The access log: one JSON line per request, carrying the decision and the outcome."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_support import StartBackends, StartProxy, closed_port, config, raw_client

pytestmark = pytest.mark.timeout(30)

FIELDS = {
    "time",
    "client",
    "method",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "route",
    "pool",
    "backend",
    "attempts",
}


async def test_one_line_per_request_with_the_decision(
    backends: StartBackends, proxy: StartProxy
) -> None:
    (a,) = await backends("a")
    dead = f"127.0.0.1:{closed_port()}"
    p = await proxy(
        config(
            {"p": {"backends": [dead, a.address]}},
            routes=[{"name": "api", "match": {"path_prefix": "/api/"}, "pool": "p"}],
        )
    )
    async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
        assert (await c.post("/api/up", content=b"u" * 1000)).status_code == 200
        assert (await c.get("/api/big?size=5000")).status_code == 200
        assert (await c.get("/nowhere")).status_code == 404
    async with raw_client(p) as client:
        await client.send(b"BROKEN\r\n\r\n")
        assert (await client.response()).status == 400
    await asyncio.sleep(0.5)  # the log is written a few times a second
    lines = p.log_lines()
    assert len(lines) == 4, lines
    up, big, missing, broken = lines
    for line in lines:
        assert set(line) >= FIELDS, f"missing {FIELDS - set(line)} in {line}"
        assert line["client"] == "127.0.0.1"
    assert (up["method"], up["path"], up["status"]) == ("POST", "/api/up", 200)
    assert (up["route"], up["pool"], up["backend"]) == ("api", "p", a.address)
    assert up["attempts"] == 2  # the closed port first, then a
    assert up["bytes_in"] == 1000
    assert big["attempts"] in (1, 2) and big["backend"] == a.address
    assert big["bytes_out"] >= 5000
    assert missing["status"] == 404 and missing["path"] == "/nowhere"
    assert broken["status"] == 400


async def test_a_response_cut_by_the_clients_bad_input_says_why(
    raw_server: Any, proxy: StartProxy
) -> None:
    async def answer_early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only: the body is still coming
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    backend = await raw_server(answer_early)
    p = await proxy(config({"p": {"backends": [backend.address]}}, pool="p"))
    async with raw_client(p) as client:
        await client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert b"200 OK" in await client.read_head()
        await client.send(b"zz\r\nnot a chunk size\r\n")  # the response has begun: it is cut
        await asyncio.wait_for(client.reader.read(), 5)  # evenflow closes the connection
    await asyncio.sleep(0.5)  # the log is written a few times a second
    [line] = p.log_lines()
    assert line["status"] == 200 and line["path"] == "/upload"
    [failure] = line["failures"]
    assert failure.startswith("client: ") and "chunk" in failure, failure


async def test_metrics_requests_false_counts_nothing_but_still_logs(
    backends: StartBackends, proxy: StartProxy, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from evenflow.observability.metrics import make_registry, render

    (a,) = await backends("a")
    counted = await proxy(config({"p": {"backends": [a.address]}}, pool="p"))
    uncounted = await proxy(
        config(
            {"p": {"backends": [a.address]}},
            pool="p",
            metrics={"requests": False},
            access_log={"path": str(tmp_path / "uncounted.log")},
        )
    )
    for p in (counted, uncounted):
        async with httpx.AsyncClient(base_url=p.url, timeout=5) as c:
            for _ in range(3):
                assert (await c.get("/x")).status_code == 200

    def requests_total(p: Any) -> float:
        text = render(make_registry(p.server)).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return sum(s.value for s in families["evenflow_requests"].samples)

    assert requests_total(counted) == 3
    assert requests_total(uncounted) == 0
    await asyncio.sleep(0.5)  # the log is written a few times a second
    lines = (tmp_path / "uncounted.log").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == [200, 200, 200]
