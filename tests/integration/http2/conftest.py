"""Fixtures for the HTTP/2 integration tests: backends and evenflow, all stopped after each test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from h2_support import Proxy, running_proxy

from evenflow.demo.backend import DemoBackend


@pytest.fixture
async def exits() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def backends(
    exits: contextlib.AsyncExitStack,
) -> Callable[..., Awaitable[list[DemoBackend]]]:
    """`await backends("a", "b")`: DemoBackends that name themselves in x-backend."""

    async def start(*names: str) -> list[DemoBackend]:
        started = []
        for name in names:
            backend = DemoBackend(name)
            await backend.start("127.0.0.1", 0)
            exits.push_async_callback(backend.close)
            started.append(backend)
        return started

    return start


@pytest.fixture
def proxy(
    exits: contextlib.AsyncExitStack, tmp_path: Path
) -> Callable[[dict[str, Any]], Awaitable[Proxy]]:
    async def start(data: dict[str, Any]) -> Proxy:
        return await exits.enter_async_context(running_proxy(data, tmp_path))

    return start
