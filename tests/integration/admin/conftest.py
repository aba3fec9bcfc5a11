"""Fixtures for the admin API tests: demo backends, evenflow in this loop with its admin API on
a free port, and httpx clients for both; everything stopped after each test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_support import CLIENT_TIMEOUT_S, Running, Start, free_port, write_config

from evenflow.config.load import load_data
from evenflow.demo.backend import DemoBackend, start_backends
from evenflow.server import Server, StartupError


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def backends(exits: contextlib.AsyncExitStack) -> dict[str, DemoBackend]:
    started = await start_backends(["a", "b", "c", "d"])
    for backend in started:
        exits.push_async_callback(backend.close)
    return {backend.name: backend for backend in started}


@pytest.fixture
def evenflow(exits: contextlib.AsyncExitStack) -> Start:
    """`await evenflow(data, path=None, token=None)`: evenflow started with `data` (written to
    `path` first when given, for reloads), stopped after the test."""

    async def start(
        data: dict[str, Any], path: Path | None = None, token: str | None = None
    ) -> Running:
        server = None
        for _ in range(5):  # another process may take a free port before we bind it
            data["listeners"][0]["bind"] = f"127.0.0.1:{free_port()}"
            data["admin"]["bind"] = f"127.0.0.1:{free_port()}"
            if path is not None:
                write_config(path, data)
            server = Server(load_data(data).config, None if path is None else str(path))
            try:
                await server.start()
                break
            except StartupError as exc:
                if "cannot listen" not in str(exc):
                    raise
                server = None
        assert server is not None, "evenflow could not bind in 5 tries"
        exits.push_async_callback(server.stop)
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        admin = httpx.AsyncClient(
            base_url=server.admin.url, headers=headers, timeout=CLIENT_TIMEOUT_S
        )
        proxy = httpx.AsyncClient(
            base_url=f"http://{server.bound('web')}", timeout=CLIENT_TIMEOUT_S
        )
        exits.push_async_callback(admin.aclose)
        exits.push_async_callback(proxy.aclose)
        return Running(server, data, admin, proxy)

    return start
