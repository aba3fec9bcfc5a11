"""The admin API's endpoints: each reads its request, makes one controller call, answers JSON.

Owns request parsing (JSON bodies, durations, addresses in paths) and the statuses of answers;
knows nothing of sockets or tokens (server.py). Handlers run on the data plane's loop, so they
never block: the controller's actions are quick and synchronous, and only a reload awaits.
Errors are raised as `ActionError(status, sentence)`; server.py turns them into
`{"error": sentence}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from evenflow.admin.loop_lag import LoopLag
from evenflow.admin.openapi import OPENAPI
from evenflow.config.load import ConfigError
from evenflow.config.model import Admin
from evenflow.config.units import parse_duration
from evenflow.observability.metrics import make_registry, render
from evenflow.observability.stats import SAMPLE_S, by_backend
from evenflow.runtime.controller import ActionError, Controller
from evenflow.server import StartupError  # by contract; server.py imports this package lazily

if TYPE_CHECKING:
    from evenflow.server import Server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

POOLS = "/api/v1/pools"
POOL = POOLS + "/{pool}"
BACKENDS = POOL + "/backends"
BACKEND = BACKENDS + "/{address}"  # host:port, IPv6 as [::1]:8080, percent-encoded or not
OPEN_PATHS = frozenset({"/live", "/ready"})  # probes (Kubernetes' included) carry no token
REFUSED = "config refused; the running config is kept"
STATS_WINDOW_S = 60.0


def dumps(data: Any) -> str:
    # indented: operators read these with curl
    return json.dumps(data, indent=2) + "\n"


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return reply({"error": message}, status, headers)


_OPENAPI_TEXT = dumps(OPENAPI)  # the document never changes: serialize it once


class Api:
    """The endpoints over one Server; `routes()` is what the app registers."""

    def __init__(self, server: Server, admin_config: Admin, lag: LoopLag) -> None:
        self.server = server
        self.admin_config = admin_config  # what this admin API runs with until a restart
        self.lag = lag
        self._metrics: CollectorRegistry | None = None

    @property
    def controller(self) -> Controller:
        return self.server.controller

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of every endpoint; openapi.py describes exactly these."""
        return [
            ("GET", "/live", self.live),
            ("GET", "/ready", self.ready),
            ("GET", "/api/v1/openapi.json", self.openapi),
            ("GET", POOLS, self.pools),
            ("GET", POOL, self.pool),
            ("GET", POOL + "/hotspots", self.hotspots),
            ("POST", BACKENDS, self.add_backend),
            ("GET", BACKEND, self.backend),
            ("DELETE", BACKEND, self.remove_backend),
            ("POST", BACKEND + "/drain", self.drain),
            ("POST", BACKEND + "/enable", self.enable),
            ("POST", BACKEND + "/disable", self.disable),
            ("PUT", BACKEND + "/weight", self.set_weight),
            ("POST", "/api/v1/reload", self.reload),
            ("GET", "/api/v1/flips", self.flips),
            ("GET", "/api/v1/stats", self.stats),
            ("GET", "/metrics", self.metrics),
        ]

    # -- probes ------------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        # answering at all shows the loop runs; the lag says how well
        return reply(
            {
                "status": "alive",
                "loop_lag_ms": round(self.lag.last_s * 1000, 3),
                "loop_lag_max_ms": round(self.lag.worst_s * 1000, 3),
            }
        )

    async def ready(self, request: web.Request) -> web.Response:
        problems = self.controller.readiness()
        if problems:
            return reply({"status": "not ready", "problems": problems}, 503)
        return reply({"status": "ready"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=_OPENAPI_TEXT, content_type="application/json")

    # -- state -------------------------------------------------------------------------------

    async def pools(self, request: web.Request) -> web.Response:
        return reply({"pools": self.controller.describe_pools()})

    async def pool(self, request: web.Request) -> web.Response:
        return reply(self.controller.describe_pool(request.match_info["pool"]))

    async def stats(self, request: web.Request) -> web.Response:
        """Per backend over the last minute: requests/s, p50/p99 latency, a req/s history."""
        recent = by_backend(self.controller.stats, STATS_WINDOW_S)
        return reply(
            {
                "window_s": STATS_WINDOW_S,
                "sample_s": SAMPLE_S,
                "backends": {
                    f"{pool}/{address}": r.as_dict() for (pool, address), r in recent.items()
                },
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text exposition, rendered from evenflow's own counters now."""
        if self._metrics is None:
            self._metrics = make_registry(self.server)
        return web.Response(
            body=render(self._metrics), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def hotspots(self, request: web.Request) -> web.Response:
        return reply(self.controller.describe_hotspots(request.match_info["pool"]))

    async def backend(self, request: web.Request) -> web.Response:
        controller = self.controller
        return reply(controller.describe_backend(controller.backend(*_backend_key(request))))

    async def flips(self, request: web.Request) -> web.Response:
        return reply({"flips": [flip.as_dict() for flip in self.controller.flips]})

    # -- operator actions --------------------------------------------------------------------

    async def drain(self, request: web.Request) -> web.Response:
        deadline_s = _deadline(await _json_body(request, {"deadline"}))
        controller = self.controller
        backend = controller.drain(*_backend_key(request), deadline_s)
        return reply(controller.describe_backend(backend))

    async def enable(self, request: web.Request) -> web.Response:
        controller = self.controller
        return reply(controller.describe_backend(controller.enable(*_backend_key(request))))

    async def disable(self, request: web.Request) -> web.Response:
        controller = self.controller
        return reply(controller.describe_backend(controller.disable(*_backend_key(request))))

    async def set_weight(self, request: web.Request) -> web.Response:
        body = await _json_body(request, {"weight"})
        if "weight" not in body:
            raise ActionError(400, 'weight: required, as {"weight": 3}')
        controller = self.controller
        backend = controller.set_weight(*_backend_key(request), body["weight"])
        return reply(controller.describe_backend(backend))

    async def add_backend(self, request: web.Request) -> web.Response:
        body = await _json_body(request, {"address", "weight"})
        address = body.get("address")
        if not isinstance(address, str):
            raise ActionError(400, 'address: required, a string as "10.0.0.7:8000"')
        pool = request.match_info["pool"]
        controller = self.controller
        backend = controller.add_backend(pool, address, body.get("weight", 1))
        location = f"{POOLS}/{quote(pool, safe='')}/backends/{quote(backend.address, safe='')}"
        return reply(controller.describe_backend(backend), 201, {"Location": location})

    async def remove_backend(self, request: web.Request) -> web.Response:
        deadline_s = _deadline(await _json_body(request, {"deadline"}))
        pool, address = _backend_key(request)
        controller = self.controller
        controller.remove_backend(pool, address, deadline_s)
        # 202: it drains first; GET on it answers 404 once it is gone
        return reply(controller.describe_backend(controller.backend(pool, address)), 202)

    async def reload(self, request: web.Request) -> web.Response:
        server = self.server
        try:
            await server.reload()
        except ConfigError as exc:
            return _refused(exc.source, exc.problems)
        except StartupError as exc:
            return _refused(server.controller.config_path or "<config>", [("", str(exc))])
        config = server.config
        notes = []
        if config.admin != self.admin_config:
            notes.append("admin settings changed: they take effect when evenflow restarts")
        return reply(
            {
                "status": "reloaded",
                "source": server.controller.config_path,
                "listeners": len(config.listeners),
                "pools": len(config.pools),
                "backends": sum(len(pool.backends) for pool in config.pools.values()),
                "notes": notes,
            }
        )


def _refused(source: str, problems: list[tuple[str, str]]) -> web.Response:
    return reply(
        {
            "error": REFUSED,
            "source": source,
            "problems": [{"path": path, "message": message} for path, message in problems],
        },
        400,
    )


def _backend_key(request: web.Request) -> tuple[str, str]:
    # aiohttp has percent-decoded both already, once: %5B%3A%3A1%5D%3A8080 is [::1]:8080
    return request.match_info["pool"], request.match_info["address"]


async def _json_body(request: web.Request, fields: set[str]) -> dict[str, Any]:
    """The request's JSON object ({} when there is no body); 400 for anything else, or for a
    field this endpoint does not take (a typo must not be ignored silently)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ActionError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ActionError(400, "request body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ActionError(400, "request body must be a JSON object")
    unknown = sorted(set(data) - fields)
    if unknown:
        takes = ", ".join(sorted(fields))
        raise ActionError(400, f"unknown field {unknown[0]!r} in the request body (takes: {takes})")
    return data


def _deadline(body: dict[str, Any]) -> float | None:
    value = body.get("deadline")
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ActionError(400, f"deadline: {exc}") from None
