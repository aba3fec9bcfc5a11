"""Helpers for the admin API tests: free ports, the base config, and what a started evenflow
hands a test (its server, its config as data, clients for the admin API and the listener)."""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from evenflow.demo.backend import DemoBackend
from evenflow.server import Server

CLIENT_TIMEOUT_S = 5.0


def free_port() -> int:
    """A port that was free a moment ago (the config refuses port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(backends: dict[str, DemoBackend]) -> dict[str, Any]:
    """Pool web (a, b; round robin) serves everything but /api/, which pool api (c) serves."""
    return {
        "listeners": [
            {
                "name": "web",
                "bind": "",
                "routes": [
                    {"name": "api", "match": {"path_prefix": "/api/"}, "pool": "api"},
                    {"name": "default", "pool": "web"},
                ],
            }
        ],
        "pools": {
            "web": {"backends": [backends["a"].address, backends["b"].address]},
            "api": {"backends": [backends["c"].address]},
        },
        "admin": {"bind": ""},
        "access_log": {"path": "off"},
        "drain_timeout": "1s",
    }


@dataclass
class Running:
    server: Server
    data: dict[str, Any]  # the config as started, binds filled in
    admin: httpx.AsyncClient  # base URL: the admin API
    proxy: httpx.AsyncClient  # base URL: evenflow's listener


def write_config(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML


Start = Callable[..., Awaitable[Running]]


def backend_url(pool: str, address: str, action: str = "") -> str:
    """The admin API path of a backend (or of one of its actions), percent-encoded."""
    url = f"/api/v1/pools/{quote(pool, safe='')}/backends/{quote(address, safe='')}"
    return f"{url}/{action}" if action else url


def by_address(pool: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {backend["address"]: backend for backend in pool["backends"]}
