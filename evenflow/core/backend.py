"""A backend and its live state.

`BackendState` is shared by both planes: the control plane sets weights and health, the data
plane moves the live counters. Balancers are rebuilt from it on every change, so everything that
must survive a rebuild (counters, idle connections) lives here, not in a balancer.
"""

from __future__ import annotations

import enum
from typing import Any

from evenflow.core.address import join_host_port, split_host_port


class Health(enum.Enum):
    """What the health system concluded; the admin API shows `.value`."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class BackendState:
    """One backend of one pool: identity, weights, administrative state and live counters."""

    __slots__ = (
        "address",
        "host",
        "port",
        "pool",
        "weight",
        "effective_weight",
        "health",
        "in_flight",
        "active_connections",
        "requests_total",
        "failures_total",
        "idle",
    )

    def __init__(self, pool: str, address: str, weight: int = 1) -> None:
        self.host, self.port = split_host_port(address)
        self.address = join_host_port(self.host, self.port)
        self.pool = pool
        self.weight = weight  # configured (or set at runtime): the share asked for
        # what balancers use: weight after slow start and similar ramps; equals weight otherwise
        self.effective_weight: float = float(weight)
        self.health = Health.HEALTHY
        self.in_flight = 0  # requests sent and not yet answered
        self.active_connections = 0  # open upstream connections
        self.requests_total = 0
        self.failures_total = 0
        # idle upstream connections kept by the data plane for reuse; core never looks inside
        self.idle: list[Any] = []

    def __repr__(self) -> str:
        return f"<backend {self.pool}/{self.address} w={self.effective_weight:g}>"
