"""The access log: one JSON line per request, carrying the decision and the outcome."""

from __future__ import annotations

import asyncio

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
