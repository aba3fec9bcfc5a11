"""The immutable view the data plane reads: compiled routes and a balancer per pool.

A snapshot is built off the hot path on every change and swapped in with one assignment; the
data plane reads `controller.snapshot` once per request and never sees a half-built view.
"""

from __future__ import annotations

from collections.abc import Mapping

from evenflow.balancing.base import Balancer, build
from evenflow.config.model import Config, HttpListener, Pool
from evenflow.core.backend import BackendState
from evenflow.core.pool import usable
from evenflow.routing.table import compile_listener


class PoolRuntime:
    """One pool as the data plane sees it: settings in seconds and the balancer to pick with."""

    __slots__ = (
        "name",
        "backends",
        "balancer",
        "connect_timeout_s",
        "response_timeout_s",
        "idle_timeout_s",
        "attempts",
        "max_idle",
        "algorithm",
    )

    def __init__(self, name: str, config: Pool, backends: list[BackendState]) -> None:
        self.name = name
        self.backends = backends
        self.algorithm = config.algorithm
        self.balancer: Balancer = build(config.algorithm, usable(backends))
        self.connect_timeout_s = config.timeouts.connect
        self.response_timeout_s = config.timeouts.response
        self.idle_timeout_s = config.timeouts.idle
        self.attempts = config.retries.attempts
        self.max_idle = config.max_idle_connections


class ListenerRuntime:
    __slots__ = ("name", "config", "routes")

    def __init__(self, config: HttpListener) -> None:
        self.name = config.name
        self.config = config
        self.routes = compile_listener(config)


class Snapshot:
    __slots__ = ("config", "pools", "listeners", "generation")

    def __init__(
        self,
        config: Config,
        backends: Mapping[str, list[BackendState]],
        generation: int,
    ) -> None:
        self.config = config
        self.generation = generation
        self.pools = {
            name: PoolRuntime(name, pool, backends[name]) for name, pool in config.pools.items()
        }
        self.listeners = {lst.name: ListenerRuntime(lst) for lst in config.listeners}
