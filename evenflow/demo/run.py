"""`evenflow demo`: three demo backends and evenflow in front of them, on one event loop.

The embedded config shows what a first-time user should see working: path routing, a header
route for canaries, a weighted split, least_conn, consistent hashing on a header, active health
checks with rise/fall and passive ejection, slow start, the admin API, /metrics and the
dashboard. It prints the URLs and the curl lines to try.
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


# every demo pool is probed (GET /healthz, every 2s, 1s while changing), ejects a backend
# after 3 failures in a row on traffic, and ramps a recovered backend up over 10s
HEALTH: dict[str, Any] = {
    "active": {
        "http": {"path": "/healthz"},
        "interval": "2s",
        "fast_interval": "500ms",
        "timeout": "500ms",
        "rise": 2,
        "fall": 2,
    },
    "passive": {"consecutive_failures": 3, "ejection_time": "10s"},
    "slow_start": "10s",
}

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
                    {
                        "name": "users",
                        "match": {"path_prefix": "/users"},
                        "pool": "users",
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
                "health": HEALTH,
            },
            "api": {"algorithm": "least_conn", "backends": [a, b, c], "health": HEALTH},
            "users": {
                "algorithm": "consistent_hash",
                "hash_key": "header:x-user-id",
                "backends": [a, b, c],
                "health": HEALTH,
            },
            "canary": {"backends": [c], "health": HEALTH},
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
            f"dashboard: {admin_url}/   metrics: {admin_url}/metrics",
            f"admin API on {admin_url} (described at {admin_url}/api/v1/openapi.json):",
            f"  curl -s {admin_url}/api/v1/pools/web             # each backend's state",
            f"  curl -s -X POST {admin_url}/api/v1/pools/web/backends/{backend}/drain",
            "make a backend fail its health checks, and watch it turn unhealthy (then ok=1):",
            f"  curl -s -X POST 'http://{backend}/_control/health?ok=0'",
        ]
    return [
        f"evenflow demo: listening on {url}",
        "try:",
        f"  curl -i {url}/                       # web pool: a twice as often as b",
        f"  curl -i {url}/api/users              # least_conn over a, b and c",
        f"  curl -i {url}/api/slow?delay=500     # ... a slow answer keeps its backend busy",
        f"  curl -i -H 'x-canary: true' {url}/   # the canary route: always c",
        f"  curl -i {url}/shop                   # 80/20 split between web and canary",
        f"  curl -i -H 'x-user-id: 42' {url}/users  # consistent hashing: same user, same one",
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
