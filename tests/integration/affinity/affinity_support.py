"""Helpers for the affinity tests: evenflow in this loop with its admin API, demo backends by
name, clients bound to chosen loopback addresses, and reading what a response says."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import httpx

from evenflow.demo.backend import DemoBackend
from evenflow.server import Server

CLIENT_TIMEOUT_S = 10.0
COOKIE = "EF_AFFINITY"


def free_port() -> int:
    """A port that was free a moment ago (the config refuses port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(pool: dict[str, Any]) -> dict[str, Any]:
    """One HTTP listener whose every request goes to pool `web`; the admin API on."""
    return {
        "listeners": [{"name": "web", "bind": "", "pool": "web"}],
        "pools": {"web": pool},
        "admin": {"bind": ""},
        "access_log": {"path": "off"},
        "drain_timeout": "1s",
    }


@dataclass
class Running:
    server: Server
    admin: httpx.AsyncClient
    proxy: httpx.AsyncClient
    backends: dict[str, DemoBackend]  # name → backend
    names: dict[str, str] = field(default_factory=dict)  # address → name

    @property
    def url(self) -> str:
        return f"http://{self.server.bound('web')}"

    async def hotspots(self) -> dict[str, Any]:
        answer = await self.admin.get("/api/v1/pools/web/hotspots")
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    async def pool(self) -> dict[str, Any]:
        answer = await self.admin.get("/api/v1/pools/web")
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data


Start = Callable[..., Awaitable[Running]]
Client = Callable[..., Awaitable[httpx.AsyncClient]]


def served_by(response: httpx.Response) -> str:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.headers["x-backend"]


def issued_cookie(response: httpx.Response, name: str = COOKIE) -> str | None:
    """The value of the affinity cookie a response sets, None if it sets none."""
    values = [
        morsel.value
        for line in response.headers.get_list("set-cookie")
        for key, morsel in _parse(line).items()
        if key == name
    ]
    assert len(values) <= 1, values
    return values[0] if values else None


def _parse(line: str) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(line)
    return cookie


async def map_keys(
    client: httpx.AsyncClient, keys: Iterable[str], header: str = "x-user-id", batch: int = 25
) -> dict[str, list[str]]:
    """Send one request per key (`batch` at a time); key → the backends that served it."""
    seen: dict[str, list[str]] = {}
    pending = list(keys)
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        answers = await asyncio.gather(*(client.get("/", headers={header: k}) for k in chunk))
        for key, answer in zip(chunk, answers, strict=True):
            seen.setdefault(key, []).append(served_by(answer))
    return seen
