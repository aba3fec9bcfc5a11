"""Layer 4 UDP: datagrams relayed per client flow, replies sent back to the right client.

A flow is one client address (or, with `per_datagram`, one client address and one backend):
it gets its own connected socket to its backend, so replies arriving there belong to that
client without parsing anything. Flows live in a table bounded by `max_flows` (the least
recently active is dropped first, and counted) and are forgotten after `timeouts.idle`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, cast

from evenflow.balancing.base import PickContext
from evenflow.config.l4 import UdpListener
from evenflow.core.backend import BackendState
from evenflow.core.errors import describe_os_error
from evenflow.proxy.proxy_protocol import encode_v2

if TYPE_CHECKING:
    from evenflow.observability.access_log import AccessLog
    from evenflow.proxy.http1.downstream import SnapshotSource
    from evenflow.runtime.snapshot import PoolRuntime

log = logging.getLogger(__name__)

PENDING_LIMIT = 64  # datagrams queued per flow while its socket is being set up
SWEEP_S = 1.0  # how often idle flows are looked for

Address = tuple[str, int]


class UdpListenerStats:
    __slots__ = (
        "datagrams_in",
        "datagrams_out",
        "bytes_in",
        "bytes_out",
        "flows",
        "evicted",
        "expired",
        "dropped",
    )

    def __init__(self) -> None:
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.flows = 0  # flows created
        self.evicted = 0  # dropped to keep max_flows
        self.expired = 0  # forgotten after the idle timeout
        self.dropped = 0  # datagrams dropped (no backend, queue full)


class UdpListenerContext:
    __slots__ = (
        "name",
        "config",
        "source",
        "loop",
        "access_log",
        "flows",
        "stats",
        "transport",
        "local",
        "_sweeper",
        "closing",
    )

    def __init__(
        self,
        config: UdpListener,
        source: SnapshotSource,
        loop: asyncio.AbstractEventLoop,
        access_log: AccessLog | None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.source = source
        self.loop = loop
        self.access_log = access_log
        self.flows: OrderedDict[tuple[Address, str], UdpFlow] = OrderedDict()
        self.stats = UdpListenerStats()
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("", 0)
        self._sweeper: asyncio.TimerHandle | None = None
        self.closing = False

    def start_sweeping(self) -> None:
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        deadline = time.monotonic() - self.config.timeouts.idle
        flows = self.flows
        while flows:
            key, flow = next(iter(flows.items()))
            if flow.last_seen > deadline:
                break  # ordered by activity: the rest are newer
            del flows[key]
            self.stats.expired += 1
            flow.close("idle")
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def close(self) -> None:
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for flow in list(self.flows.values()):
            flow.close("shutdown")
        self.flows.clear()
        if self.transport is not None:
            self.transport.close()


class UdpListenerProtocol(asyncio.DatagramProtocol):
    """The listening socket: finds or makes the flow for each datagram."""

    def __init__(self, ctx: UdpListenerContext) -> None:
        self.ctx = ctx
        self.pick_ctx = PickContext()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ctx = self.ctx
        ctx.transport = cast(asyncio.DatagramTransport, transport)
        local = transport.get_extra_info("sockname")
        ctx.local = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
        ctx.start_sweeping()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ctx = self.ctx
        if ctx.closing:
            return
        client: Address = (addr[0], addr[1])
        stats = ctx.stats
        stats.datagrams_in += 1
        stats.bytes_in += len(data)
        flows = ctx.flows
        snapshot = ctx.source.snapshot
        pool = snapshot.pools.get(ctx.config.pool)
        if ctx.config.per_datagram:
            # DNS-style: every datagram balanced on its own; a flow per (client, backend)
            if pool is None:
                stats.dropped += 1
                return
            backend = _pick(pool, self.pick_ctx, client[0])
            if backend is None:
                stats.dropped += 1
                return
            key = (client, backend.address)
        else:
            key = (client, "")
            backend = None
        flow = flows.get(key)
        if flow is not None and not flow.closed:
            flows.move_to_end(key)
            flow.send(data)
            return
        if backend is None:
            if pool is None:
                stats.dropped += 1
                return
            backend = _pick(pool, self.pick_ctx, client[0])
            if backend is None:
                stats.dropped += 1
                return
        flow = UdpFlow(ctx, client, backend, pool.send_proxy == "v2" if pool else False)
        flows[key] = flow
        stats.flows += 1
        while len(flows) > ctx.config.limits.max_flows:
            _, oldest = flows.popitem(last=False)
            stats.evicted += 1
            oldest.close("evicted")
        flow.send(data)
        flow.open()

    def error_received(self, exc: Exception) -> None:
        log.debug("listener %s: %s", self.ctx.name, exc)


def _pick(pool: PoolRuntime, ctx: PickContext, client_ip: str) -> BackendState | None:
    ctx.client_ip = client_ip
    if pool.affinity is not None:
        return pool.affinity.pick(pool.balancer, ctx, None, client_ip)[0]
    return pool.balancer.pick(ctx)


class UdpFlow(asyncio.DatagramProtocol):
    """One client's flow: a connected socket to its backend, replies go back to the client."""

    __slots__ = (
        "ctx",
        "client",
        "backend",
        "transport",
        "pending",
        "last_seen",
        "closed",
        "datagrams_in",
        "datagrams_out",
        "bytes_in",
        "bytes_out",
        "started_at",
        "proxy_header",
    )

    def __init__(
        self, ctx: UdpListenerContext, client: Address, backend: BackendState, send_proxy: bool
    ) -> None:
        self.ctx = ctx
        self.client = client
        self.backend = backend
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] | None = []
        self.last_seen = time.monotonic()
        self.closed = False
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.started_at = time.perf_counter()
        # PROXY v2 over UDP: the header leads every datagram (the spec's DGRAM form)
        self.proxy_header = encode_v2(client, ctx.local, transport="dgram") if send_proxy else b""

    def open(self) -> None:
        backend = self.backend
        task = self.ctx.loop.create_task(
            self.ctx.loop.create_datagram_endpoint(
                lambda: self, remote_addr=(backend.host, backend.port)
            )
        )
        task.add_done_callback(self._on_open)

    def _on_open(self, task: asyncio.Task[Any]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None or task.cancelled():
            detail = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            self.ctx.source.report_failure(self.backend, f"udp socket failed: {detail}")
            self.close("connect_failed")
            return
        if self.closed:
            transport, _ = task.result()
            transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.backend.active_connections += 1
        pending, self.pending = self.pending, None
        for data in pending or ():
            self._sendto_backend(data)

    def send(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        self.datagrams_in += 1
        self.bytes_in += len(data)
        pending = self.pending
        if pending is not None:
            if len(pending) < PENDING_LIMIT:
                pending.append(data)
            else:
                self.ctx.stats.dropped += 1
            return
        self._sendto_backend(data)

    def _sendto_backend(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.sendto(self.proxy_header + data if self.proxy_header else data)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        ctx = self.ctx
        self.last_seen = time.monotonic()
        self.datagrams_out += 1
        self.bytes_out += len(data)
        ctx.stats.datagrams_out += 1
        ctx.stats.bytes_out += len(data)
        if ctx.transport is not None:
            ctx.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the backend is not there
        detail = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        self.ctx.source.report_failure(self.backend, f"udp: {detail}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.backend.active_connections -= 1
            self.transport = None

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        backend = self.backend
        backend.bytes_out += self.bytes_in
        backend.bytes_in += self.bytes_out
        if self.transport is not None:
            self.transport.close()
        access_log = self.ctx.access_log
        if access_log is not None:
            access_log.log_record(
                {
                    "listener": self.ctx.name,
                    "client": self.client[0],
                    "backend": backend.address,
                    "datagrams_in": self.datagrams_in,
                    "datagrams_out": self.datagrams_out,
                    "bytes_in": self.bytes_in,
                    "bytes_out": self.bytes_out,
                    "duration_ms": round((time.perf_counter() - self.started_at) * 1000, 3),
                    "close": reason,
                }
            )


def describe_flows(ctx: UdpListenerContext) -> dict[str, Any]:
    stats = ctx.stats
    return {
        "listener": ctx.name,
        "flows": len(ctx.flows),
        "flows_created": stats.flows,
        "evicted": stats.evicted,
        "expired": stats.expired,
        "dropped": stats.dropped,
        "datagrams_in": stats.datagrams_in,
        "datagrams_out": stats.datagrams_out,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
    }
