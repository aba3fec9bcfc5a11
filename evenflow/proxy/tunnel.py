"""An upgraded connection (WebSocket) relayed as bytes both ways, after the 101.

When a backend switches protocols, the client connection and that backend connection stop
being HTTP: both transports are handed to a pair of `TunnelSide` protocols that pass bytes
through, propagate half-closes and resets, apply backpressure, close after `idle_timeout_s`
without traffic, and end the exchange (one long request for least_conn and the metrics) when
either side closes. A drain deadline cuts the tunnel like any backend connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from evenflow.core.backend import BackendState
from evenflow.proxy.watchdog import Watchdog, periods

log = logging.getLogger(__name__)


class Tunnel:
    """The two sides, the timeout, and what to do when it is over."""

    __slots__ = (
        "client",
        "backend_side",
        "backend",
        "on_end",
        "bytes_up",
        "bytes_down",
        "watchdog",
        "idle_timeout_s",
        "_quiet",
        "_last",
        "_ended",
    )

    def __init__(
        self,
        client: asyncio.Transport,
        backend_transport: asyncio.Transport,
        backend: BackendState,
        idle_timeout_s: float,
        loop: asyncio.AbstractEventLoop,
        on_end: Callable[[Tunnel, str], None],
    ) -> None:
        self.backend = backend
        self.on_end = on_end
        self.bytes_up = 0  # client → backend
        self.bytes_down = 0  # backend → client
        self.idle_timeout_s = idle_timeout_s
        self._quiet = 0
        self._last = -1
        self._ended = False
        self.client = TunnelSide(self, client, upstream=False)
        self.backend_side = TunnelSide(self, backend_transport, upstream=True)
        self.client.peer = self.backend_side
        self.backend_side.peer = self.client
        # the handover may leave either transport paused by the HTTP side's backpressure
        client.resume_reading()
        backend_transport.resume_reading()
        client.set_protocol(self.client)
        backend_transport.set_protocol(self.backend_side)
        # ...and a side that cannot write yet must hold the other one back from the start
        for side in (self.client, self.backend_side):
            if side.transport.get_write_buffer_size() > side.transport.get_write_buffer_limits()[1]:
                side.pause_writing()
        backend.live.add(self.backend_side)
        self.watchdog = Watchdog(loop, min(idle_timeout_s, 5.0), self._check)
        self.watchdog.start()

    def _check(self) -> bool:
        if self._ended:
            return False
        total = self.bytes_up + self.bytes_down
        if total != self._last:
            self._last = total
            self._quiet = 0
            return True
        self._quiet += 1
        if self._quiet >= periods(self.idle_timeout_s, self.watchdog.period_s):
            self.end("timeout", abort=True)
            return False
        return True

    def end(self, reason: str, abort: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        self.watchdog.stop()
        self.backend.live.discard(self.backend_side)
        for side in (self.client, self.backend_side):
            transport = side.transport
            if not transport.is_closing():
                if abort:
                    transport.abort()
                else:
                    transport.close()
        self.on_end(self, reason)


class TunnelSide(asyncio.Protocol):
    __slots__ = ("tunnel", "transport", "peer", "upstream", "eof")

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport, upstream: bool) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.peer: TunnelSide | None = None
        self.upstream = upstream  # this side is the backend's
        self.eof = False

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if self.upstream:
            tunnel.bytes_down += len(data)
        else:
            tunnel.bytes_up += len(data)
        peer = self.peer
        if peer is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.eof:
            self.tunnel.end("backend" if self.upstream else "client")
            return False
        if peer is not None and not peer.transport.is_closing() and peer.transport.can_write_eof():
            peer.transport.write_eof()  # a half-close passes through, as on tcp listeners
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        side = "backend" if self.upstream else "client"
        self.tunnel.end(side if exc is None else "reset", abort=exc is not None)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()

    def terminate(self, reason: str) -> None:
        """Cut the tunnel for the control plane (its backend's drain deadline passed)."""
        self.tunnel.end("drain", abort=True)

    def close(self) -> None:
        self.tunnel.end("closed")

    def abort(self) -> None:
        self.tunnel.end("aborted", abort=True)
