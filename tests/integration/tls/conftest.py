"""Fixtures for the TLS integration tests: a CA per test, demo backends, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tls_support import Pki

from evenflow.demo.backend import DemoBackend


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
async def backend() -> AsyncIterator[DemoBackend]:
    started = DemoBackend("b1")
    await started.start("127.0.0.1", 0)
    try:
        yield started
    finally:
        await started.close()
