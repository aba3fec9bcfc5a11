"""Fixtures for the HTTP/2 unit tests (the harness is in harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .harness import Pair, config


@pytest.fixture
def pair() -> Iterator[Callable[..., Pair]]:
    made: list[Pair] = []

    def make(data: dict[str, Any] | None = None, **kwargs: Any) -> Pair:
        p = Pair(data or config(), **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.conn.connection_lost(None)
