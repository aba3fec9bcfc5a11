"""The control plane: owns the config and every backend's state, publishes snapshots.

Every change (today: a new config; with health, drains and weights later) goes through here, is
applied to the long-lived `BackendState` objects, and ends in one new `Snapshot` swapped in with a
single assignment, so the data plane never sees a half-applied change.
"""

from __future__ import annotations

import logging

from evenflow.config.model import Config
from evenflow.core.backend import BackendState
from evenflow.runtime.snapshot import Snapshot

log = logging.getLogger(__name__)


class Controller:
    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.backends: dict[str, list[BackendState]] = {
            name: [BackendState(name, b.address, b.weight) for b in pool.backends]
            for name, pool in config.pools.items()
        }
        self.generation = 0
        self.snapshot = Snapshot(config, self.backends, self.generation)

    def publish(self) -> None:
        """Rebuild the snapshot from the current config and backend states, and swap it in."""
        self.generation += 1
        self.snapshot = Snapshot(self.config, self.backends, self.generation)

    def all_backends(self) -> list[BackendState]:
        return [b for backends in self.backends.values() for b in backends]
