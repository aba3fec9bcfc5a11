"""The immutable view the data plane reads: compiled routes and a balancer per pool.

A snapshot is built off the hot path on every change and swapped in with one assignment; the
data plane reads `controller.snapshot` once per request and never sees a half-built view.
"""

from __future__ import annotations

from collections.abc import Mapping

from evenflow.balancing.base import Balancer, build
from evenflow.config.model import Config, HttpListener, Pool
from evenflow.core.pool import PoolView
from evenflow.routing.table import compile_listener


class PoolRuntime:
    """One pool as the data plane sees it: settings in seconds and the balancer to pick with."""

    __slots__ = (
        "name",
        "balancer",
        "connect_timeout_s",
        "response_timeout_s",
        "idle_timeout_s",
        "attempts",
        "max_idle",
        "algorithm",
        "passive",
        "count_5xx",
        "panic",
        "config",
        "signature",
    )

    def __init__(self, name: str, config: Pool, pool_view: PoolView) -> None:
        self.name = name
        self.config = config
        self.signature = _signature(pool_view)
        self.algorithm = config.algorithm
        self.balancer: Balancer = build(config.algorithm, pool_view.usable)
        self.panic = pool_view.panic
        self.connect_timeout_s = config.timeouts.connect
        self.response_timeout_s = config.timeouts.response
        self.idle_timeout_s = config.timeouts.idle
        self.attempts = config.retries.attempts
        self.max_idle = config.max_idle_connections
        passive = config.health.passive
        self.passive = passive is not None  # report failures on traffic to the controller
        self.count_5xx = passive is not None and passive.count_5xx


def _signature(pool_view: PoolView) -> tuple[object, ...]:
    """What the balancer was built from: an unchanged pool keeps its balancer (and with it
    the position of its rotation) across snapshots."""
    return (
        pool_view.panic,
        tuple((id(b), b.effective_weight) for b in pool_view.usable),
    )


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
        views: Mapping[str, PoolView],
        generation: int,
        previous: Snapshot | None = None,
    ) -> None:
        self.config = config
        self.generation = generation
        old_pools: dict[str, PoolRuntime] = previous.pools if previous is not None else {}
        old_listeners: dict[str, ListenerRuntime] = (
            previous.listeners if previous is not None else {}
        )
        self.pools: dict[str, PoolRuntime] = {}
        for name, pool in config.pools.items():
            old = old_pools.get(name)
            if old is not None and old.config is pool and old.signature == _signature(views[name]):
                self.pools[name] = old  # unchanged: keep its balancer's state
            else:
                self.pools[name] = PoolRuntime(name, pool, views[name])
        self.listeners: dict[str, ListenerRuntime] = {}
        for listener in config.listeners:
            kept = old_listeners.get(listener.name)
            # routes are compiled once per config: a split keeps its rotation across snapshots
            self.listeners[listener.name] = (
                kept if kept is not None and kept.config is listener else ListenerRuntime(listener)
            )
