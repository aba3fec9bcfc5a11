"""The immutable view the data plane reads: compiled routes and a balancer per pool.

A snapshot is built off the hot path on every change and swapped in with one assignment; the
data plane reads `controller.snapshot` once per request and never sees a half-built view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evenflow.balancing.base import Balancer, BalancerOptions, build
from evenflow.config.l4 import TcpListener
from evenflow.config.model import HASHING_ALGORITHMS, Config, HttpListener, Pool
from evenflow.core.backend import BackendState
from evenflow.core.pool import PoolView
from evenflow.proxy.connectors import Connector, connector_for
from evenflow.routing.table import compile_listener
from evenflow.sticky.affinity import PoolAffinity, PoolTracking
from evenflow.tls.clienthello import sni_matches


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
        "send_proxy",
        "affinity",
        "hashing",
        "connect",
    )

    def __init__(
        self,
        name: str,
        config: Pool,
        pool_view: PoolView,
        members: Sequence[BackendState] = (),
        tracking: PoolTracking | None = None,
        secret: bytes = b"",
    ) -> None:
        self.name = name
        self.config = config
        self.signature = _signature(pool_view, members)
        self.algorithm = config.algorithm
        options = BalancerOptions(
            virtual_nodes=config.virtual_nodes,
            table_size=config.table_size,
            bounded_load=config.bounded_load,
            ip_prefix=config.ip_prefix,
        )
        self.balancer: Balancer = build(config.algorithm, pool_view.usable, options)
        # consistent_hash and maglev key on hash_key (the client address by default)
        self.hashing = config.algorithm in HASHING_ALGORITHMS and config.algorithm != "ip_hash"
        needs_affinity = self.hashing or config.sticky is not None or config.algorithm == "ip_hash"
        self.affinity = (
            PoolAffinity(
                name,
                config,
                pool_view.usable,
                members,
                tracking or PoolTracking(config),
                secret,
                self.hashing,
            )
            if needs_affinity
            else None
        )
        self.panic = pool_view.panic
        self.connect_timeout_s = config.timeouts.connect
        self.response_timeout_s = config.timeouts.response
        self.idle_timeout_s = config.timeouts.idle
        self.attempts = config.retries.attempts
        self.max_idle = config.max_idle_connections
        passive = config.health.passive
        self.passive = passive is not None  # report failures on traffic to the controller
        self.count_5xx = passive is not None and passive.count_5xx
        self.send_proxy = config.send_proxy  # "v1" | "v2" | None, for tcp and udp listeners
        self.connect: Connector = connector_for(config)  # plain, TLS or an HTTP/2 stream


def _signature(pool_view: PoolView, members: Sequence[BackendState]) -> tuple[object, ...]:
    """What the balancer was built from: an unchanged pool keeps its balancer (and with it
    the position of its rotation) across snapshots."""
    return (
        pool_view.panic,
        tuple((id(b), b.effective_weight) for b in pool_view.usable),
        tuple(map(id, members)),
    )


class ListenerRuntime:
    """An HTTP listener's routes, and the limits every new connection (every HTTP/2 stream)
    reads: taken from the config once, not from its pydantic models per connection."""

    __slots__ = (
        "name",
        "config",
        "routes",
        "max_header_bytes",
        "max_body_bytes",
        "max_connections",
        "header_timeout_s",
        "idle_timeout_s",
        "body_timeout_s",
        "send_timeout_s",
        "check_period_s",
    )

    def __init__(self, config: HttpListener) -> None:
        self.name = config.name
        self.config = config
        self.routes = compile_listener(config)
        limits = config.limits
        self.max_header_bytes: int = limits.max_header_bytes
        self.max_body_bytes: int | None = limits.max_body_bytes
        self.max_connections: int = limits.max_connections
        timeouts = config.timeouts
        self.header_timeout_s: float = timeouts.header
        self.idle_timeout_s: float = timeouts.idle
        self.body_timeout_s: float = timeouts.body
        self.send_timeout_s: float = timeouts.send
        # how often a connection's watchdog looks at it: its shortest timeout
        self.check_period_s: float = min(
            self.header_timeout_s, self.idle_timeout_s, self.body_timeout_s, self.send_timeout_s
        )


class SniRoutes:
    """A tcp listener's routes on the TLS server name: first match wins."""

    __slots__ = ("config", "_routes")

    def __init__(self, config: TcpListener) -> None:
        self.config = config
        self._routes = [
            (route.name or f"route-{i}", tuple(route.match.sni or ()), route.pool)
            for i, route in enumerate(config.routes)
        ]

    def match(self, server_name: str | None) -> tuple[str, str] | None:
        """(route name, pool) for a ClientHello's server name (None: the hello had none)."""
        for name, patterns, pool in self._routes:
            if not patterns:
                return name, pool
            if server_name is not None and any(sni_matches(server_name, p) for p in patterns):
                return name, pool
        return None


class Snapshot:
    __slots__ = ("config", "pools", "listeners", "sni_routes", "generation")

    def __init__(
        self,
        config: Config,
        views: Mapping[str, PoolView],
        generation: int,
        previous: Snapshot | None = None,
        members: Mapping[str, Sequence[BackendState]] | None = None,
        tracking: Mapping[str, PoolTracking] | None = None,
        secrets: Mapping[str, bytes] | None = None,
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
            pool_members = (members or {}).get(name, ())
            if (
                old is not None
                and old.config is pool
                and old.signature == _signature(views[name], pool_members)
            ):
                self.pools[name] = old  # unchanged: keep its balancer's state
            else:
                self.pools[name] = PoolRuntime(
                    name,
                    pool,
                    views[name],
                    pool_members,
                    (tracking or {}).get(name),
                    (secrets or {}).get(name, b""),
                )
        self.listeners: dict[str, ListenerRuntime] = {}
        self.sni_routes: dict[str, SniRoutes] = {}
        for listener in config.listeners:
            if isinstance(listener, TcpListener):
                if listener.routes:
                    self.sni_routes[listener.name] = SniRoutes(listener)
                continue
            if not isinstance(listener, HttpListener):
                continue
            kept = old_listeners.get(listener.name)
            # routes are compiled once per config: a split keeps its rotation across snapshots
            self.listeners[listener.name] = (
                kept if kept is not None and kept.config is listener else ListenerRuntime(listener)
            )
