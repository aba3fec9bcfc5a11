"""HTTP/2 over TLS: ALPN chooses h2, and the connection is served exactly as h2c is (test
certificates from trustme; the TLS termination itself is tests/integration/tls' subject)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from h2_support import Proxy, config

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(30)

StartBackends = Callable[..., Awaitable[list[DemoBackend]]]
StartProxy = Callable[[dict[str, Any]], Awaitable[Proxy]]


async def test_alpn_h2_streams_reach_two_pools(
    backends: StartBackends, proxy: StartProxy, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    a, b = await backends("a", "b")
    data = config(
        {"a": {"backends": [a.address]}, "b": {"backends": [b.address]}},
        routes=[{"match": {"path_prefix": "/b/"}, "pool": "b"}, {"pool": "a"}],
    )
    data["listeners"][0]["tls"] = {"certificates": [{"cert": str(cert_path), "key": str(key_path)}]}
    p = await proxy(data)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://localhost:{p.port}"
    async with httpx.AsyncClient(http2=True, verify=context, base_url=url, timeout=10) as client:
        responses = await asyncio.gather(
            *(client.get(f"/{'b/' if i % 2 else ''}echo") for i in range(20))
        )
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [r.headers["x-backend"] for r in responses] == ["a", "b"] * 10
    echoed = dict((n.lower(), v) for n, v in responses[0].json()["headers"])
    assert echoed["x-forwarded-proto"] == "https"
    stats = p.ctx.http2
    assert stats is not None and (stats.connections, stats.streams) == (1, 20)
    assert p.ctx.opened == 1
