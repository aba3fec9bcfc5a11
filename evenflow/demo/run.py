"""`evenflow demo`: three demo backends and evenflow in front of them, on one event loop.

The embedded config shows what a first-time user should see working: path routing, a header
route for canaries, a weighted split, least_conn, the admin API, and (as they land) health
checks and the dashboard. It prints the curl lines to try.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from evenflow.config.load import load_data
from evenflow.demo.backend import DemoBackend, start_backends
from evenflow.server import Server

log = logging.getLogger(__name__)


DEFAULT_PORT = 8080
DEFAULT_ADMIN_PORT = 9901


def admin_port_for(port: int) -> int:
    """9901 beside the default port; next to any other, so that two demos do not collide."""
    if port == DEFAULT_PORT:
        return DEFAULT_ADMIN_PORT
    return port + 1 if port < 65535 else port - 1


def demo_config(
    host: str, port: int, addresses: dict[str, str], admin_port: int | None = None
) -> dict[str, Any]:
    """The demo's config as data; `addresses` maps backend names to where they listen."""
    a, b, c = addresses["a"], addresses["b"], addresses["c"]
    return {
        "listeners": [
            {
                "name": "demo",
                "bind": f"{host}:{port}",
                "routes": [
                    {
                        "name": "canary",
                        "match": {"headers": {"x-canary": "true"}},
                        "pool": "canary",
                    },
                    {"name": "api", "match": {"path_prefix": "/api/"}, "pool": "api"},
                    {
                        "name": "shop",
                        "match": {"path_prefix": "/shop"},
                        "split": [{"pool": "web", "weight": 80}, {"pool": "canary", "weight": 20}],
                        "response_headers": {"set": {"x-served-by": "evenflow-demo"}},
                    },
                    {"name": "default", "pool": "web"},
                ],
            }
        ],
        "pools": {
            "web": {
                "algorithm": "weighted_round_robin",
                "backends": [{"address": a, "weight": 2}, {"address": b, "weight": 1}],
            },
            "api": {"algorithm": "least_conn", "backends": [a, b, c]},
            "canary": {"backends": [c]},
        },
        # loopback whatever --host says: the demo's admin API has no token
        "admin": {"bind": f"127.0.0.1:{admin_port or admin_port_for(port)}"},
        "access_log": {"path": "stdout"},
        "drain_timeout": "2s",
    }


def usage_lines(url: str, admin_url: str | None = None, backend: str = "") -> list[str]:
    admin: list[str] = []
    if admin_url is not None:
        admin = [
            f"admin API on {admin_url} (described at {admin_url}/api/v1/openapi.json):",
            f"  curl -s {admin_url}/api/v1/pools/web             # each backend's state",
            f"  curl -s -X POST {admin_url}/api/v1/pools/web/backends/{backend}/drain",
        ]
    return [
        f"evenflow demo: listening on {url}",
        "try:",
        f"  curl -i {url}/                       # web pool: a twice as often as b",
        f"  curl -i {url}/api/users              # least_conn over a, b and c",
        f"  curl -i {url}/api/slow?delay=500     # ... a slow answer keeps its backend busy",
        f"  curl -i -H 'x-canary: true' {url}/   # the canary route: always c",
        f"  curl -i {url}/shop                   # 80/20 split between web and canary",
        *admin,
        "Ctrl-C to stop.",
    ]


async def run_demo(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, admin_port: int | None = None
) -> None:
    backends: list[DemoBackend] = await start_backends(["a", "b", "c"], host="127.0.0.1")
    try:
        config = load_data(
            demo_config(host, port, {b.name: b.address for b in backends}, admin_port), "<demo>"
        ).config
        server = Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, server.request_stop)
        await server.start()
        try:
            url = f"http://{server.bound('demo')}"
            admin_url = server.admin.url if server.admin is not None else None
            print("\n".join(usage_lines(url, admin_url, backends[0].address)), flush=True)
            await server.wait_stopped()
        finally:
            await server.stop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    finally:
        for backend in backends:
            await backend.close()
