"""Fixtures for the affinity tests: demo backends and evenflow with its admin API in this loop,
clients (optionally from a chosen 127.x address); everything stopped after each test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from affinity_support import CLIENT_TIMEOUT_S, Client, Running, Start, config, free_port

from evenflow.config.load import load_data
from evenflow.demo.backend import DemoBackend
from evenflow.server import Server, StartupError


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def client(exits: contextlib.AsyncExitStack) -> Client:
    """`await client(base_url, local_address=None)`: an httpx client, closed after the test;
    `local_address` (127.0.0.x) makes it a distinct client address for evenflow."""

    async def make(base_url: str, local_address: str | None = None) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=local_address)
        made = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=CLIENT_TIMEOUT_S)
        exits.push_async_callback(made.aclose)
        return made

    return make


@pytest.fixture
def evenflow(exits: contextlib.AsyncExitStack, client: Client) -> Start:
    """`await evenflow(pool, names, listed=None)`: demo backends `names`, of which pool `web`
    lists the first `listed` (all by default), and evenflow in front with its admin API; all
    stopped afterwards."""

    async def start(
        pool: dict[str, Any], names: str | list[str] = "abc", listed: int | None = None
    ) -> Running:
        backends: dict[str, DemoBackend] = {}
        for name in names:
            backend = DemoBackend(name)
            await backend.start("127.0.0.1", 0)
            exits.push_async_callback(backend.close)
            backends[name] = backend
        pool = {"backends": [b.address for b in backends.values()][:listed], **pool}
        server = None
        for _ in range(5):  # another process may take a free port before we bind it
            data = config(pool)
            data["listeners"][0]["bind"] = f"127.0.0.1:{free_port()}"
            data["admin"]["bind"] = f"127.0.0.1:{free_port()}"
            server = Server(load_data(data).config, None)
            try:
                await server.start()
                break
            except StartupError as exc:
                if "cannot listen" not in str(exc):
                    raise
                server = None
        assert server is not None, "evenflow could not bind in 5 tries"
        exits.push_async_callback(server.stop)
        admin = await client(server.admin.url)
        proxy = await client(f"http://{server.bound('web')}")
        names_by_address = {b.address: name for name, b in backends.items()}
        return Running(server, admin, proxy, backends, names_by_address)

    return start
