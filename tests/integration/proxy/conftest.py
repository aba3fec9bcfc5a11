"""Fixtures for the proxy integration tests: backends and evenflow, all stopped after each test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from proxy_support import CountingBackend, Handler, Proxy, RawServer, running_proxy

from evenflow.demo.recorder import RecordingBackend


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def backends(
    exits: contextlib.AsyncExitStack,
) -> Callable[..., Awaitable[list[CountingBackend]]]:
    """`await backends("a", "b")`: DemoBackends that count accepted connections."""

    async def start(*names: str) -> list[CountingBackend]:
        started = []
        for name in names:
            backend = CountingBackend(name)
            await backend.start("127.0.0.1", 0)
            exits.push_async_callback(backend.close)
            started.append(backend)
        return started

    return start


@pytest.fixture
def recorder(exits: contextlib.AsyncExitStack) -> Callable[[], Awaitable[RecordingBackend]]:
    async def start() -> RecordingBackend:
        backend = RecordingBackend()
        await backend.start("127.0.0.1", 0)
        exits.push_async_callback(backend.close)
        return backend

    return start


@pytest.fixture
def raw_server(exits: contextlib.AsyncExitStack) -> Callable[[Handler], Awaitable[RawServer]]:
    """`await raw_server(handler)`: a backend scripted by the test, one handler per connection."""

    async def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        await server.start()
        exits.push_async_callback(server.close)
        return server

    return start


@pytest.fixture
def proxy(
    exits: contextlib.AsyncExitStack, tmp_path: Path
) -> Callable[[dict[str, Any]], Awaitable[Proxy]]:
    """`await proxy(config(...))`: evenflow in this loop; stopped (drained) after the test."""

    async def start(data: dict[str, Any]) -> Proxy:
        return await exits.enter_async_context(running_proxy(data, tmp_path))

    return start
