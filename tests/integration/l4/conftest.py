"""Fixtures for the layer 4 integration tests: evenflow and its peers, stopped after each test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from l4_support import Evenflow, Handler, TcpBackend, UdpBackend, running_evenflow


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def evenflow(
    exits: contextlib.AsyncExitStack, tmp_path: Path
) -> Callable[[dict[str, Any]], Awaitable[Evenflow]]:
    """`await evenflow(config)`: evenflow in this loop; stopped (drained) after the test."""

    async def start(data: dict[str, Any]) -> Evenflow:
        return await exits.enter_async_context(running_evenflow(data, tmp_path))

    return start


@pytest.fixture
def tcp_backend() -> Iterator[Callable[..., TcpBackend]]:
    """`tcp_backend(handler, name)`: a threaded TCP server, closed after the test."""
    started: list[TcpBackend] = []

    def start(handler: Handler, name: str = "backend") -> TcpBackend:
        backend = TcpBackend(handler, name)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.close()


@pytest.fixture
def udp_backend() -> Iterator[Callable[..., UdpBackend]]:
    started: list[UdpBackend] = []

    def start(name: str, proxy_header: bool = False) -> UdpBackend:
        backend = UdpBackend(name, proxy_header)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.close()
