"""A backend and its live state.

`BackendState` is shared by both planes: the control plane sets weights, health and
administrative state; the data plane moves the live counters. Balancers are rebuilt from it on
every change, so everything that must survive a rebuild (counters, idle connections, the health
history) lives here, not in a balancer.
"""

from __future__ import annotations

import enum
from typing import Any

from evenflow.core.address import join_host_port, split_host_port


class Health(enum.Enum):
    """What active probes concluded."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Admin(enum.Enum):
    """What an operator asked for."""

    ENABLED = "enabled"
    DRAINING = "draining"  # no new requests or connections; in-flight ones finish
    DISABLED = "disabled"  # maintenance: no traffic at all


class BackendState:
    """One backend of one pool: identity, weights, health, administrative state, counters."""

    __slots__ = (
        "address",
        "host",
        "port",
        "pool",
        "weight",
        "config_weight",
        "effective_weight",
        "health",
        "admin",
        "drain_deadline",
        "ejected_until",
        "ejections",
        "recovered_at",
        "consecutive_failures",
        "awaiting_probe",
        "last_probe",
        "last_probe_at",
        "last_flip",
        "last_flip_at",
        "in_flight",
        "active_connections",
        "requests_total",
        "failures_total",
        "bytes_in",
        "bytes_out",
        "idle",
        "live",
    )

    def __init__(self, pool: str, address: str, weight: int = 1) -> None:
        self.host, self.port = split_host_port(address)
        self.address = join_host_port(self.host, self.port)
        self.pool = pool
        self.config_weight = weight  # as the config file says; `weight` may be set at runtime
        self.weight = weight  # the share asked for
        # what balancers use: `weight` after slow start; equals weight otherwise
        self.effective_weight: float = float(weight)
        self.health = Health.HEALTHY
        self.admin = Admin.ENABLED
        self.drain_deadline = 0.0  # monotonic time past which a drain closes what is left
        self.ejected_until = 0.0  # passive detection: out of rotation until this monotonic time
        self.ejections = 0  # consecutive ejections, for the growing ejection time
        self.recovered_at = 0.0  # when it last became usable: the start of its slow-start ramp
        # failures in a row seen on real traffic; the data plane resets it on success
        self.consecutive_failures = 0
        # declared unhealthy at start (initial_state) and not probed yet: not known to be down
        self.awaiting_probe = False
        self.last_probe = ""  # "ok" or why the last probe failed
        self.last_probe_at = 0.0  # wall-clock time
        self.last_flip = ""  # "unhealthy: 3 probe failures: connect timeout"
        self.last_flip_at = 0.0  # wall-clock time
        self.in_flight = 0  # requests sent and not yet answered
        self.active_connections = 0  # open upstream connections
        self.requests_total = 0
        self.failures_total = 0
        self.bytes_in = 0  # from the backend (L4 listeners count these)
        self.bytes_out = 0  # to the backend
        # idle upstream connections kept by the data plane for reuse; core never looks inside
        self.idle: list[Any] = []
        # every open upstream connection, so a drain deadline or removal can close them
        self.live: set[Any] = set()

    def state(self, now: float) -> str:
        """The one word the admin API and dashboard show (most restrictive first)."""
        if self.admin is Admin.DISABLED:
            return "disabled"
        if self.admin is Admin.DRAINING:
            return "draining"
        if self.health is Health.UNHEALTHY:
            return "unhealthy"
        if self.ejected_until > now:
            return "ejected"
        return "healthy"

    def __repr__(self) -> str:
        return f"<backend {self.pool}/{self.address} w={self.effective_weight:g}>"
