"""Lifecycle shared by the demo servers: bind, know the port, track live connections, close.

Owns the listening socket and the set of accepted connections; knows nothing of HTTP. A
subclass supplies the per-connection protocol.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol, Self


class Abortable(Protocol):
    def abort(self) -> None: ...


class DemoServer:
    """A TCP server with a name that can be started, asked for its port, and closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._server: asyncio.Server | None = None
        self._host = ""
        self._port = 0
        # Live connections, so that close() leaves nothing running behind it.
        self.connections_open: set[Abortable] = set()

    def make_protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind host:port (0: a free port) and start accepting; `port` is known on return."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r} is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.make_protocol, host, port, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        self._host, self._port = sockname[0], sockname[1]

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r} is not started")
        return self._port

    @property
    def address(self) -> str:
        """host:port as a pool's backend list wants it ([v6]:port for IPv6)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting and abort every open connection; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self.connections_open):
            conn.abort()
        await server.wait_closed()
        # Let connection_lost callbacks run so that nothing is left for the loop's teardown.
        await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
