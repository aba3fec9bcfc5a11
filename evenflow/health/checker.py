"""The active probes of one pool: a loop per backend, at a jittered interval (control plane).

A backend is probed at once when the checker starts (so a declared initial state is confirmed
or corrected quickly), then every `interval`, or every `fast_interval` while a flip is under way
or it is down. A failure seen on real traffic wakes its loop early. Results go to the
controller, which owns the rise/fall count and every decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from typing import TYPE_CHECKING

from evenflow.config.health import ActiveHealth
from evenflow.core.backend import BackendState
from evenflow.health.probes import describe, probe_grpc, probe_http, probe_tcp

if TYPE_CHECKING:
    from evenflow.runtime.controller import Controller

log = logging.getLogger(__name__)


class HealthChecker:
    def __init__(self, pool: str, config: ActiveHealth, controller: Controller) -> None:
        self.pool = pool
        self.config = config
        self.controller = controller
        self.probe_name = describe(config.kind, config.http or config.grpc)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tls_context: tuple[ssl.SSLContext | None, str | None] | None = None

    def start(self) -> None:
        for backend in self.controller.backends.get(self.pool, []):
            self._wake[backend.address] = asyncio.Event()
            self._tasks[backend.address] = asyncio.get_running_loop().create_task(
                self._loop(backend), name=f"probe {self.pool}/{backend.address}"
            )

    def wake(self, backend: BackendState) -> None:
        """Probe `backend` now rather than at its next interval."""
        event = self._wake.get(backend.address)
        if event is not None:
            event.set()

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def stop(self) -> None:
        self.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    def _tls(self) -> tuple[ssl.SSLContext | None, str | None]:
        """The pool's TLS to its backends (`tls:`), which a gRPC probe speaks too."""
        if self._tls_context is None:
            pool = self.controller.config.pools.get(self.pool)
            tls = pool.tls if pool is not None else None
            if tls is None:
                self._tls_context = (None, None)
            else:
                from evenflow.tls.client import client_context

                self._tls_context = client_context(tls, ("h2",))
        return self._tls_context

    async def _loop(self, backend: BackendState) -> None:
        config = self.config
        wake = self._wake[backend.address]
        port = config.port or backend.port
        while True:
            try:
                if config.http is not None:
                    ok, detail = await probe_http(
                        backend.host, port, config.http, config.timeout, backend.address
                    )
                elif config.grpc is not None:
                    context, server_name = self._tls()
                    ok, detail = await probe_grpc(
                        backend.host,
                        port,
                        config.grpc,
                        config.timeout,
                        backend.address,
                        context,
                        server_name or backend.host,
                    )
                else:
                    ok, detail = await probe_tcp(backend.host, port, config.timeout)
                self.controller.on_probe_result(backend, ok, detail, self.probe_name)
            except asyncio.CancelledError:
                raise
            except Exception:  # a probe bug must not end probing of this backend
                log.exception("probe of %s/%s failed unexpectedly", self.pool, backend.address)
            fast = self.controller.is_probing_fast(backend)
            interval = config.fast_interval if fast else config.interval
            interval *= 1.0 + random.uniform(-config.jitter, config.jitter)
            wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as the wait ends, and the loop would outlive stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, interval)):
                    await wake.wait()
