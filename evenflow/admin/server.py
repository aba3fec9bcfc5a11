"""The admin API's HTTP server: aiohttp on the data plane's event loop, bearer-token auth, and
every error answered as `{"error": "<sentence>"}`.

Owns the listening socket, the token and the loop-lag timer; the endpoints are in api.py.
No access log: operator actions are logged by the controller, and a request log here would
only repeat them (or log every probe).
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from evenflow.admin.api import OPEN_PATHS, Api, error_reply
from evenflow.admin.loop_lag import LoopLag
from evenflow.config.model import Admin
from evenflow.core.address import join_host_port, split_host_port
from evenflow.runtime.controller import ActionError
from evenflow.server import StartupError  # by contract; server.py imports this package lazily

if TYPE_CHECKING:
    from evenflow.server import Server

log = logging.getLogger(__name__)

# The largest valid request body is a few dozen bytes; this bounds what one request may make
# evenflow buffer.
MAX_BODY_BYTES = 64 * 1024
SHUTDOWN_S = 2.0  # on stop, how long an admin request under way may take to finish
OPENAPI_PATH = "/api/v1/openapi.json"
STATIC_DIR = Path(__file__).parent / "static"


async def _dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


class AdminServer:
    """The admin API of one `Server`, listening on `config.bind` between start() and stop()."""

    def __init__(self, server: Server, config: Admin) -> None:
        self.server = server
        self.config = config
        self.lag = LoopLag()
        self._token: bytes | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application(
            middlewares=[_json_errors, self._auth], client_max_size=MAX_BODY_BYTES
        )
        for method, path, handler in Api(server, config, self.lag).routes():
            self.app.router.add_route(method, path, handler)
        # the dashboard: plain files shipped in the package, no build step
        self.app.router.add_get("/", _dashboard)
        self.app.router.add_static("/static/", STATIC_DIR, show_index=False)

    @property
    def bound(self) -> str:
        """The address actually listened on, as host:port ([v6]:port for IPv6)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the admin API is not listening")
        host, port = self._runner.addresses[0][:2]
        return join_host_port(host, port)

    @property
    def url(self) -> str:
        return f"http://{self.bound}"

    async def start(self) -> None:
        """Read the token, bind, serve; StartupError says what stopped it."""
        self._token = self._read_token()
        host, port = split_host_port(self.config.bind)
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_S
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(
                f"cannot listen on {self.config.bind} (admin): {exc.strerror or exc}"
            ) from None
        self._runner = runner
        self.lag.start()
        log.info("admin API on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and close the admin connections; safe before start() and twice."""
        self.lag.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _read_token(self) -> bytes | None:
        name = self.config.token_env
        if name is None:
            return None
        # surrounding whitespace cannot survive an HTTP header (RFC 9110 §5.5), so drop it
        value = os.environ.get(name, "").strip()
        if not value:
            why = "is empty" if name in os.environ else "is not set"
            raise StartupError(
                f"admin.token_env: environment variable {name} {why}; "
                "set it to the admin API's bearer token"
            )
        return value.encode("utf-8", "surrogatepass")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """RFC 6750 bearer token on everything but the probes; checked before routing's 404,
        so that without the token nothing reveals which paths exist."""
        if (
            self._token is None
            or request.path in OPEN_PATHS
            or request.path == "/"
            or request.path.startswith("/static/")
        ):
            # the dashboard's page is open (it holds no data; it asks for the token and sends
            # it with every API call)
            return await handler(request)
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return error_reply(
                401,
                "this admin API needs a token: send Authorization: Bearer <token>",
                {"WWW-Authenticate": 'Bearer realm="evenflow"'},
            )
        # surrogatepass: any header text encodes, and distinct texts stay distinct
        if not hmac.compare_digest(credentials.encode("utf-8", "surrogatepass"), self._token):
            return error_reply(
                401,
                "wrong bearer token",
                {"WWW-Authenticate": 'Bearer realm="evenflow", error="invalid_token"'},
            )
        return await handler(request)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as {"error": "<sentence>"}: the controller's refusals, aiohttp's own 404,
    405 and 413, and (logged once) a bug."""
    try:
        return await handler(request)
    except ActionError as exc:
        return error_reply(exc.status, exc.message)
    except web.HTTPNotFound:
        return error_reply(
            404, f"no endpoint {request.path}; the API is described at {OPENAPI_PATH}"
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_reply(
            405,
            f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
            {"Allow": allowed},
        )
    except web.HTTPRequestEntityTooLarge:
        return error_reply(413, f"request body over {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_reply(exc.status, exc.reason)
    except Exception:  # a request boundary: answer, log once, keep serving
        log.exception("admin API: %s %s failed", request.method, request.path)
        return error_reply(500, "internal error in evenflow's admin API; see evenflow's log")
